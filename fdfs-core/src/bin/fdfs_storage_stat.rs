//! `fdfs_storage_stat`: see `fdfs_core::tools::commands::storage_stat`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::storage_stat)
}
