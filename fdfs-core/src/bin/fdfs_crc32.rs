//! `fdfs_crc32`: see `fdfs_core::tools::commands::crc32`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::crc32)
}
