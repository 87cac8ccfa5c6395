//! `fdfs_volumn_stat`: see `fdfs_core::tools::commands::volumn_stat`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::volumn_stat)
}
