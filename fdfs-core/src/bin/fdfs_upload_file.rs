//! `fdfs_upload_file`: see `fdfs_core::tools::commands::upload_file`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::upload_file)
}
