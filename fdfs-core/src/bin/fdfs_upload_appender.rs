//! `fdfs_upload_appender`: see `fdfs_core::tools::commands::upload_appender`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::upload_appender)
}
