//! `fdfs_append_file`: see `fdfs_core::tools::commands::append_file`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::append_file)
}
