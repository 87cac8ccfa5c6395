//! `fdfs_tracker_stat`: see `fdfs_core::tools::commands::tracker_stat`.

fn main() -> std::process::ExitCode {
    fdfs_core::tools::commands::main(fdfs_core::tools::commands::tracker_stat)
}
