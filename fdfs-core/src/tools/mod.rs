//! What the command-line tools share: loading client.conf, a small runtime, output formats.

pub mod cluster_stat;
pub mod commands;
pub mod monitor;
pub mod test_programs;

use std::path::Path;

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

pub fn commas(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn commas() {
        assert_eq!(super::commas(0), "0");
        assert_eq!(super::commas(999), "999");
        assert_eq!(super::commas(1000), "1,000");
        assert_eq!(super::commas(-1234567), "-1,234,567");
    }
}
