//! `fdfs_http_token`: see `fdfs_core::tools::http_token`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::http_token::main)
}
