//! `fdfs_upload_slave` (ours): see `fdfs_core::tools::commands::upload_slave`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::upload_slave)
}
