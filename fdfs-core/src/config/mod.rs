//! FastDFS `.conf` files as typed structs with FastDFS's defaults (PROTOCOL.md §8).
//!
//! Each file type has a `load(path)` and a `from_ini(&Ini)`; unknown keys are ignored, as the C
//! daemons do, so a config written for any FastDFS release loads.

pub mod allow;
mod client;
mod http;
pub mod ini;
mod mod_fastdfs;
mod storage;
mod storage_ids;
pub mod thumbnail;
mod tracker;
pub mod unsupported;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use allow::AllowHosts;
pub use client::ClientConfig;
pub use http::HttpConfig;
pub use ini::{Entry, Ini, Keys};
pub use mod_fastdfs::{ModFastdfsConfig, ModGroup, ResponseMode};
pub use storage::{Durability, Retention, SignatureMethod, StorageConfig};
pub use storage_ids::{RwMode, StorageIdEntry, StorageIds};
pub use thumbnail::{FitMode, ThumbnailConfig};
pub use tracker::{DownloadServer, ResponseIpSize, StoreLookup, StorePath, StoreServer, TrackerConfig};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {msg}", file.display())]
    Syntax { file: PathBuf, line: usize, msg: String },
    #[error("{}:{line}: {key}: {msg}", file.display())]
    Value { file: PathBuf, line: usize, key: String, msg: String },
    #[error("{}: missing required key {key}", file.display())]
    Missing { file: PathBuf, key: String },
}

/// A `tracker_server` entry: `host[,host2]:port`, IPv6 as `[a[,b]]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    /// One or two addresses (inner and outer).
    pub hosts: Vec<String>,
    pub port: u16,
}

impl ServerAddr {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (hosts, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:")?;
            (h, p)
        } else {
            s.rsplit_once(':')?
        };
        let port: u16 = port.trim().parse().ok().filter(|&p| p > 0)?;
        let hosts: Vec<String> = hosts.split(',').map(|h| h.trim().to_owned()).collect();
        if hosts.is_empty() || hosts.len() > 2 || hosts.iter().any(|h| h.is_empty() || h.contains(char::is_whitespace))
        {
            return None;
        }
        Some(Self { hosts, port })
    }

    /// The first address as `host:port` (bracketed for IPv6), what clients connect to.
    pub fn primary(&self) -> String {
        join_host_port(&self.hosts[0], self.port)
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = self.hosts.join(",");
        if hosts.contains(':') {
            write!(f, "[{hosts}]:{}", self.port)
        } else {
            write!(f, "{hosts}:{}", self.port)
        }
    }
}

/// Reads every `tracker_server` of a section; an unparsable one is an error naming its line.
pub(crate) fn tracker_servers(keys: &Keys<'_>) -> Result<Vec<ServerAddr>, ConfigError> {
    keys.all("tracker_server")
        .into_iter()
        .map(|e| ServerAddr::parse(&e.value).ok_or_else(|| ini::value_error(e, "host[,host2]:port")))
        .collect()
}

/// `reserved_storage_space`: an absolute size or a ratio of the total (§7.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReservedSpace {
    Megabytes(u64),
    /// 0 < ratio < 1.
    Ratio(f64),
}

impl ReservedSpace {
    pub const DEFAULT: ReservedSpace = ReservedSpace::Megabytes(1024);

    pub fn parse(v: &str) -> Option<Self> {
        if let Some(p) = v.trim().strip_suffix('%') {
            let r: f64 = p.trim().parse().ok()?;
            return (r > 0.0 && r < 100.0).then_some(ReservedSpace::Ratio(r / 100.0));
        }
        let bytes = ini::parse_size(v)?;
        Some(ReservedSpace::Megabytes(bytes.div_ceil(1 << 20)))
    }

    /// Group- or path-level check: does `free_mb` out of `total_mb` leave the reserve?
    pub fn allows(self, free_mb: i64, total_mb: i64, divisor: i64) -> bool {
        match self {
            ReservedSpace::Megabytes(r) => free_mb > r as i64 / divisor.max(1),
            ReservedSpace::Ratio(r) => total_mb > 0 && (free_mb as f64 / total_mb as f64) > r,
        }
    }

    pub fn reserved_mb(self, total_mb: i64) -> i64 {
        match self {
            ReservedSpace::Megabytes(r) => r as i64,
            ReservedSpace::Ratio(r) => (total_mb as f64 * r) as i64,
        }
    }
}

impl fmt::Display for ReservedSpace {
    /// As the tracker writes it in its PARAMETER_REQ answer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReservedSpace::Megabytes(m) => write!(f, "{m}MB"),
            ReservedSpace::Ratio(r) => write!(f, "{:.2}%", r * 100.0),
        }
    }
}

pub(crate) fn reserved_space(keys: &Keys<'_>) -> Result<ReservedSpace, ConfigError> {
    match keys.entry("reserved_storage_space") {
        None => Ok(ReservedSpace::DEFAULT),
        Some(e) => ReservedSpace::parse(&e.value).ok_or_else(|| ini::value_error(e, "a size or a percentage")),
    }
}

/// `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    pub fn parse(v: &str) -> Option<Self> {
        Some(match v.to_ascii_lowercase().as_str() {
            "emerg" => LogLevel::Emerg,
            "alert" => LogLevel::Alert,
            "crit" => LogLevel::Crit,
            "err" | "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "notice" => LogLevel::Notice,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }
}

pub(crate) fn log_level(keys: &Keys<'_>) -> Result<LogLevel, ConfigError> {
    match keys.entry("log_level") {
        None => Ok(LogLevel::Info),
        Some(e) => LogLevel::parse(&e.value).ok_or_else(|| ini::value_error(e, "a log level")),
    }
}

/// How a daemon rotates one of its logs (libfastcommon's keys, C 6.16.1's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogRotation {
    /// `log_file_rotate_everyday` (true): a new file every day at `time`.
    pub daily: bool,
    /// `log_file_rotate_time` (00:00, local time).
    pub time: (u8, u8),
    /// `log_file_rotate_on_size` (0: off): a new file once the log reaches this size (at least
    /// 4 KiB).
    pub max_size: u64,
    /// `log_file_keep_days` (15; 0: all): rotated files older than this many days are removed,
    /// every day at `delete_time`.
    pub keep_days: u32,
    /// `log_file_delete_old_time` (01:30, local time).
    pub delete_time: (u8, u8),
    /// `log_file_compress_old` (false): rotated files are gzipped (`<file>.gz`) once they are
    /// `log_file_compress_days_before` (1) days old.
    pub compress: bool,
    pub compress_days_before: u32,
}

/// How the access log stamps its lines and times requests (`[access-log] time_precision`,
/// 6.16): milliseconds (`ms`, the default) or microseconds (`us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecision {
    #[default]
    Millis,
    Micros,
}

pub(crate) fn time_precision(k: &Keys<'_>) -> Result<TimePrecision, ConfigError> {
    match k.entry("time_precision") {
        None => Ok(TimePrecision::Millis),
        Some(e) => match e.value.to_ascii_lowercase().as_str() {
            "ms" | "millisecond" | "msecond" => Ok(TimePrecision::Millis),
            "us" | "microsecond" | "usecond" => Ok(TimePrecision::Micros),
            _ => Err(ini::value_error(e, "ms or us")),
        },
    }
}

/// Which log, for the keys of FastDFS before 6.14 (each log had its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    Error,
    Access,
}

/// The 6.14+ log keys: `log_file_*` in the global part, overridden in the log's section
/// (`[error-log]`, `[access-log]`). A config from before 6.14 names them per log
/// (`rotate_error_log`, `error_log_rotate_time` ...): those are honoured when no 6.14 key says
/// otherwise. Absent both, C 6.16.1's defaults: a new file every day, 15 days kept.
pub(crate) fn log_rotation(ini: &Ini, kind: LogKind) -> Result<LogRotation, ConfigError> {
    let (section, log) = match kind {
        LogKind::Error => ("error-log", "error"),
        LogKind::Access => ("access-log", "access"),
    };
    let global = ini.global();
    let own = ini.section(Some(section));
    // Where a setting is given: the log's section, else the global part, else (before 6.14)
    // the log's own old key. Absent everywhere, the global new key: its getter gives the default.
    let at = |new: &str, old: Option<String>| -> (Keys<'_>, String) {
        let places = [(&own, new.to_owned()), (&global, new.to_owned())].into_iter().chain(old.map(|o| (&global, o)));
        for (keys, key) in places {
            if keys.entry(&key).is_some() {
                return (keys.clone(), key);
            }
        }
        (global.clone(), new.to_owned())
    };
    let (k, key) = at("log_file_rotate_on_size", Some(format!("rotate_{log}_log_size")));
    let max_size = k.size(&key, 0)?;
    let (k, key) = at("log_file_rotate_everyday", Some(format!("rotate_{log}_log")));
    let daily = k.bool(&key, true)?;
    let (k, key) = at("log_file_rotate_time", Some(format!("{log}_log_rotate_time")));
    let time = k.time_of_day(&key, (0, 0))?;
    let (k, key) = at("log_file_keep_days", None);
    let keep_days = k.int_in(&key, 15, 0..=36_500)? as u32;
    let (k, key) = at("log_file_delete_old_time", None);
    let delete_time = k.time_of_day(&key, (1, 30))?;
    let (k, key) = at("log_file_compress_old", Some(format!("compress_old_{log}_log")));
    let compress = k.bool(&key, false)?;
    let (k, key) = at("log_file_compress_days_before", Some(format!("compress_{log}_log_days_before")));
    let compress_days_before = k.int_in(&key, 1, 0..=36_500)? as u32;
    Ok(LogRotation {
        daily,
        time,
        max_size: if max_size == 0 { 0 } else { max_size.max(4096) },
        keep_days,
        delete_time,
        compress,
        compress_days_before,
    })
}

pub(crate) fn seconds(keys: &Keys<'_>, key: &str, default: i64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(keys.int_in(key, default, 0..=i64::from(u32::MAX))? as u64))
}

/// A timeout in seconds where 0 or less means "the default", as libserverframe reads
/// `connect_timeout` and `network_timeout` (a zero timeout would fail every read).
pub(crate) fn timeout(keys: &Keys<'_>, key: &str, default: i64) -> Result<Duration, ConfigError> {
    let v = keys.int(key, default)?;
    let secs = if v <= 0 {
        keys.warn(key, &format!("{v} is not a timeout; using {default} s as FastDFS does"));
        default
    } else {
        v.min(i64::from(u32::MAX))
    };
    Ok(Duration::from_secs(secs as u64))
}

/// `max_connections` (C's default 256).
pub(crate) fn max_connections(keys: &Keys<'_>) -> Result<usize, ConfigError> {
    Ok(keys.int_in("max_connections", 256, 1..=1_000_000)? as usize)
}

/// `max_connections_per_ip` (ours): by default half of `max_connections`, so one host cannot
/// take every connection.
pub(crate) fn per_ip_limit(keys: &Keys<'_>, max_connections: usize) -> Result<usize, ConfigError> {
    Ok(keys.int_in("max_connections_per_ip", (max_connections as i64 / 2).max(1), 1..=1_000_000)? as usize)
}

/// `allow_hosts`, compiled at load: a bad entry is an error naming its file and line.
pub(crate) fn allow_hosts(keys: &Keys<'_>) -> Result<AllowHosts, ConfigError> {
    let entries = keys.all("allow_hosts");
    let values: Vec<String> = entries.iter().map(|e| e.value.clone()).collect();
    AllowHosts::parse_indexed(&values).map_err(|(i, why)| {
        let e = entries[i];
        ConfigError::Value { file: e.file.clone(), line: e.line, key: e.key.clone(), msg: why }
    })
}

/// Store paths `store_path0..N` with `store_path0` defaulting to `base_path`.
pub(crate) fn store_paths(
    keys: &Keys<'_>,
    count: usize,
    base_path: Option<&PathBuf>,
) -> Result<Vec<PathBuf>, ConfigError> {
    (0..count)
        .map(|i| {
            let key = format!("store_path{i}");
            match (keys.opt_string(&key), i, base_path) {
                (Some(p), _, _) => Ok(PathBuf::from(p)),
                (None, 0, Some(base)) => Ok(base.clone()),
                _ => Err(keys.required(&key).unwrap_err()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addrs() {
        let a = ServerAddr::parse("192.168.0.196:22122").unwrap();
        assert_eq!((a.hosts.clone(), a.port), (vec!["192.168.0.196".to_owned()], 22122));
        let b = ServerAddr::parse("10.0.0.1,192.168.0.1:22122").unwrap();
        assert_eq!(b.hosts.len(), 2);
        assert_eq!(b.to_string(), "10.0.0.1,192.168.0.1:22122");
        let c = ServerAddr::parse("[2409:8a20::1]:23001").unwrap();
        assert_eq!(c.primary(), "[2409:8a20::1]:23001");
        for bad in ["", "host", "host:0", "host:99999", ":22122", "a,b,c:1", "a b:1"] {
            assert!(ServerAddr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reserved_space() {
        assert_eq!(ReservedSpace::parse("20%"), Some(ReservedSpace::Ratio(0.2)));
        assert_eq!(ReservedSpace::parse("1024MB"), Some(ReservedSpace::Megabytes(1024)));
        assert_eq!(ReservedSpace::parse("10G"), Some(ReservedSpace::Megabytes(10240)));
        assert_eq!(ReservedSpace::parse("0%"), None);
        assert_eq!(ReservedSpace::parse("100%"), None);
        assert!(ReservedSpace::Megabytes(100).allows(101, 1000, 1));
        assert!(!ReservedSpace::Megabytes(100).allows(100, 1000, 1));
        assert!(ReservedSpace::Megabytes(100).allows(51, 1000, 2));
        assert!(!ReservedSpace::Ratio(0.2).allows(200, 1000, 1));
        assert!(ReservedSpace::Ratio(0.2).allows(201, 1000, 1));
        assert_eq!(ReservedSpace::Ratio(0.2).to_string(), "20.00%");
        assert_eq!(ReservedSpace::Megabytes(1024).to_string(), "1024MB");
    }

    fn rotation(text: &str, kind: LogKind) -> LogRotation {
        let ini = Ini::parse(text, std::path::Path::new("storage.conf")).unwrap();
        log_rotation(&ini, kind).unwrap()
    }

    #[test]
    fn log_rotation_keys_of_every_generation() {
        // Nothing said: C 6.16.1's defaults.
        let d = rotation("", LogKind::Error);
        assert_eq!((d.daily, d.time, d.keep_days, d.delete_time, d.max_size), (true, (0, 0), 15, (1, 30), 0));
        // The 6.14+ global keys, one overridden for the access log in its section.
        let text = "log_file_rotate_everyday = false\nlog_file_keep_days = 3\nlog_file_rotate_on_size = 1MB\n\
                    log_file_delete_old_time = 04:05\nlog_file_compress_old = true\n\
                    [access-log]\nlog_file_keep_days = 9\nlog_file_rotate_everyday = true\n";
        let e = rotation(text, LogKind::Error);
        assert_eq!((e.daily, e.keep_days, e.max_size, e.delete_time, e.compress), (false, 3, 1 << 20, (4, 5), true));
        let a = rotation(text, LogKind::Access);
        assert_eq!((a.daily, a.keep_days, a.max_size), (true, 9, 1 << 20));
        // A config from before 6.14: its own keys per log.
        let old = "rotate_error_log = false\nerror_log_rotate_time = 02:00\nrotate_access_log = true\n\
                   rotate_access_log_size = 8KB\nlog_file_keep_days = 0\n";
        let e = rotation(old, LogKind::Error);
        assert_eq!((e.daily, e.time, e.keep_days), (false, (2, 0), 0));
        let a = rotation(old, LogKind::Access);
        assert_eq!((a.daily, a.max_size), (true, 8192));
        let ini = Ini::parse("[access-log]\ntime_precision = us\n", std::path::Path::new("storage.conf")).unwrap();
        assert_eq!(time_precision(&ini.section(Some("access-log"))).unwrap(), TimePrecision::Micros);
        assert_eq!(time_precision(&ini.global()).unwrap(), TimePrecision::Millis);
        // A 6.14 key wins over the old one.
        assert!(rotation("rotate_error_log = false\nlog_file_rotate_everyday = true\n", LogKind::Error).daily);
    }
}
