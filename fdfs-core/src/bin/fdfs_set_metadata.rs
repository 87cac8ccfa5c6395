//! `fdfs_set_metadata` (ours): see `fdfs_core::tools::commands::set_metadata`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::set_metadata)
}
