//! `fdfs_list_files`: see `fdfs_core::tools::list_files`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::list_files::main)
}
