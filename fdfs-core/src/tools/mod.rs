//! What the command-line tools share: loading client.conf, a small runtime, output formats.

pub mod cluster_stat;
pub mod commands;
pub mod http_token;
pub mod list_files;
pub mod monitor;
pub mod test_programs;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::client::Client;
use crate::config::{ClientConfig, ServerAddr};

/// Loads `client.conf`; `-h HOST:PORT` (when given) replaces its tracker list.
pub fn load_client(conf: &Path, tracker: Option<&str>) -> Result<(ClientConfig, Client)> {
    let mut config = ClientConfig::load(conf).with_context(|| format!("loading {}", conf.display()))?;
    if let Some(t) = tracker {
        config.tracker_servers = vec![ServerAddr::parse(t).with_context(|| format!("bad tracker address {t}"))?];
    }
    let client = Client::new(&config);
    Ok((config, client))
}

/// Writes a tool's output. A closed stdout (`fdfs_monitor ... | head`) ends the tool quietly
/// with status 141, what a shell shows for a C tool killed by SIGPIPE, instead of a panic and
/// its backtrace; any other write error (a full disk) is said and ends it with 1.
pub fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for the tools' output (see [`out`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::tools::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the tools' output (see [`out`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::tools::out(format_args!($($arg)*))
    };
}

/// A single-threaded runtime: the tools do one thing at a time.
/// A clap tool's arguments (`prog` names it in usage), or the exit code when there are none
/// to run with: `--help`/`--version` printed (0), or a usage error printed (2).
pub fn parse_args<A: clap::Parser>(prog: &str, args: &[String]) -> std::result::Result<A, ExitCode> {
    A::try_parse_from(std::iter::once(prog.to_owned()).chain(args.iter().cloned())).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// `1234567` → `1,234,567`, as the C tools print sizes.
/// `YYYY-MM-DD HH:MM:SS` of a unix time in local time, as the C tools print times.
pub fn datetime(t: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(t, 0).single() {
        Some(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => crate::timefmt::datetime(t),
    }
}

/// A size as libfastcommon's `bytes_to_human_str` writes it: bytes as `N  B`, larger sizes in
/// the largest binary unit that fits, one decimal below 10 (rounded half up), whole above.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 0 {
        return format!("-{}", human_bytes(bytes.saturating_neg()));
    }
    if bytes < 1024 {
        return format!("{bytes}  B");
    }
    let b = i128::from(bytes);
    let mut unit: i128 = 1024;
    let mut index = 0;
    while index + 1 < UNITS.len() && b >= unit * 1024 {
        unit *= 1024;
        index += 1;
    }
    // Tenths, rounded half up, in integers: no float rounding to disagree with C's.
    let tenths = (b * 20 + unit) / (2 * unit);
    if tenths < 100 {
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[index])
    } else {
        format!("{} {}", (b * 2 + unit) / (2 * unit), UNITS[index])
    }
}

/// Megabytes (what trackers report) as [`human_bytes`] writes them.
pub fn human_mb(mb: i64) -> String {
    human_bytes(mb.saturating_mul(1 << 20))
}

#[cfg(test)]
mod tests {
    /// Every value here was printed by libfastcommon 1.0.86's `bytes_to_human_str` (the
    /// library of C FastDFS 6.16.1).
    #[test]
    fn sizes_as_libfastcommon_prints_them() {
        for (bytes, text) in [
            (0, "0  B"),
            (1023, "1023  B"),
            (1024, "1.0 KB"),
            (1280, "1.3 KB"),
            (1075, "1.0 KB"),
            (1076, "1.1 KB"),
            (10188, "9.9 KB"),
            (10189, "10 KB"),
            (10741, "10 KB"),
            (10752, "11 KB"),
            (1_048_064, "1024 KB"),
            (1_048_576, "1.0 MB"),
            (2_705_326_080, "2.5 GB"),
            (270_582_939_648, "252 GB"),
            (1_073_611_800_576, "1000 GB"),
            (3_298_534_883_328, "3.0 TB"),
            (5_629_499_534_213_120, "5.0 PB"),
            (2_305_843_009_213_693_952, "2.0 EB"),
        ] {
            assert_eq!(super::human_bytes(bytes), text, "{bytes}");
        }
    }
}
