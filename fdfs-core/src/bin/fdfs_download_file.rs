//! `fdfs_download_file`: see `fdfs_core::tools::commands::download_file`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::download_file)
}
