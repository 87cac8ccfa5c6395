//! `fdfs_file_info`: see `fdfs_core::tools::commands::file_info`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::file_info)
}
