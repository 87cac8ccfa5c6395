//! `fdfs_regenerate_filename`: see `fdfs_core::tools::commands::regenerate_filename`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::regenerate_filename)
}
