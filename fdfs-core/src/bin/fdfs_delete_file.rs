//! `fdfs_delete_file`: see `fdfs_core::tools::commands::delete_file`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::delete_file)
}
