//! `fdfs_appender_test`: see `fdfs_core::tools::test_programs`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::test_programs::appender_test)
}
