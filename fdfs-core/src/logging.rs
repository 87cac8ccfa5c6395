//! The daemons' log: `<base_path>/logs/<name>.log`, lines as FastDFS writes them
//! (`[YYYY-MM-DD HH:MM:SS] LEVEL - message`, local time), filtered by `log_level`. In the
//! foreground the lines also go to stderr, so tests and systemd see them. [`reopen`] (on
//! SIGHUP) starts a new file under the same name, so logrotate can move the old one away. The
//! daemon rotates the log itself as libfastcommon does when asked ([`LogRotation`]): daily at
//! `error_log_rotate_time` and/or at `rotate_error_log_size`, the old file renamed
//! `<name>.log.<YYYYMMDD_HHMMSS>`, rotated files older than `log_file_keep_days` removed. The
//! storage's access log (`use_access_log`) is a second file with the same handling. Rotated
//! files can be gzipped once old enough (`compress_old_error_log`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{Local, NaiveTime, TimeZone};

use crate::config::{LogLevel, LogRotation};

/// The open file and how much of it is written.
struct Current {
    file: File,
    len: u64,
}

/// The daemon's log file: where it is, the handle lines go to, and its rotation.
struct LogFile {
    path: PathBuf,
    current: Mutex<Current>,
    rotation: LogRotation,
}

/// Set once by [`init`]; [`reopen`] and rotation swap the handle inside.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();
/// The storage's access log (`use_access_log`), set once by [`init_access`].
static ACCESS_FILE: OnceLock<LogFile> = OnceLock::new();

struct FileLogger {
    to_file: bool,
    echo: bool,
    level: log::LevelFilter,
}

/// `YYYY-MM-DD HH:MM:SS` in local time, as FastDFS stamps its log lines.
pub fn local_datetime() -> String {
    Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl log::Log for FileLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("[{}] {} - {}\n", local_datetime(), record.level(), record.args());
        if let Some(log) = LOG_FILE.get().filter(|_| self.to_file) {
            log.write_line(&line);
        }
        if self.echo {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

impl LogFile {
    fn new(path: PathBuf, rotation: LogRotation) -> std::io::Result<Self> {
        let file = open(&path)?;
        let len = file.metadata()?.len();
        Ok(LogFile { path, current: Mutex::new(Current { file, len }), rotation })
    }

    /// Appends a whole line; rotates once the file reaches the rotation size.
    fn write_line(&self, line: &str) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.file.write_all(line.as_bytes()).is_ok() {
            cur.len += line.len() as u64;
        }
        if self.rotation.max_size > 0 && cur.len >= self.rotation.max_size {
            let _ = self.rotate(&mut cur);
        }
    }

    /// Starts writing to a fresh file at the path; on failure the old handle stays.
    fn reopen(&self) -> std::io::Result<()> {
        let file = open(&self.path)?;
        let len = file.metadata()?.len();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Current { file, len };
        Ok(())
    }

    /// Renames the file to `<name>.<YYYYMMDD_HHMMSS>` (a counter appended should that exist)
    /// and continues in a fresh one.
    fn rotate(&self, cur: &mut Current) -> std::io::Result<()> {
        let stamp = Local::now().format("%Y%m%d_%H%M%S").to_string();
        let mut to = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{}.{stamp}.{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &to)?;
        *cur = Current { file: open(&self.path)?, len: 0 };
        Ok(())
    }

    /// Removes rotated files (`<name>.log.<stamp>`) older than `keep_days`.
    fn remove_old(&self) {
        let keep = self.rotation.keep_days;
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name().and_then(|n| n.to_str())) else {
            return;
        };
        if keep == 0 {
            return;
        }
        let limit = std::time::SystemTime::now() - Duration::from_secs(u64::from(keep) * 86_400);
        let prefix = format!("{name}.");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let rotated = e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix));
            let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < limit);
            if rotated && old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl LogFile {
    /// Gzips rotated files (`<name>.log.<stamp>`) at least `compress_days_before` days old into
    /// `<file>.gz`, as libfastcommon's `compress_old_error_log` does; the original goes once the
    /// compressed copy is complete.
    fn compress_old(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name().and_then(|n| n.to_str())) else {
            return;
        };
        let age = Duration::from_secs(u64::from(self.rotation.compress_days_before) * 86_400);
        let limit = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
        let prefix = format!("{name}.");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let file_name = e.file_name();
            let Some(n) = file_name.to_str() else { continue };
            let rotated = n.starts_with(&prefix) && !n.ends_with(".gz") && !n.ends_with(".gz.tmp");
            let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t <= limit);
            if rotated && old {
                if let Err(err) = gzip(&e.path()) {
                    log::warn!("compressing {}: {err}", e.path().display());
                }
            }
        }
    }
}

/// `file` → `file.gz` (through `file.gz.tmp`), keeping its modification time.
fn gzip(file: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", file.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", file.display()));
    let mut input = File::open(file)?;
    let mtime = input.metadata()?.modified()?;
    let mut enc = flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)?;
    let out = enc.finish()?;
    out.set_modified(mtime)?;
    out.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(file)
}

/// Seconds from `now` to the next `time` of day, local time.
fn until_next(time: (u8, u8)) -> Duration {
    let now = Local::now();
    let at = NaiveTime::from_hms_opt(u32::from(time.0), u32::from(time.1), 0).unwrap_or_default();
    let mut day = now.date_naive();
    loop {
        if let Some(next) = Local.from_local_datetime(&day.and_time(at)).earliest() {
            if next > now {
                return (next - now).to_std().unwrap_or(Duration::from_secs(60));
            }
        }
        day = day.succ_opt().unwrap_or(day);
    }
}

/// The daily rotation and clean-up of `log`, on a thread of their own.
fn rotation_thread(log: &'static LogFile) {
    let r = log.rotation;
    if !r.daily && r.keep_days == 0 && !r.compress {
        return;
    }
    let spawned = std::thread::Builder::new().name("log-rotation".into()).spawn(move || loop {
        log.remove_old();
        if r.compress {
            log.compress_old();
        }
        let wait = if r.daily { until_next(r.time) } else { Duration::from_secs(3600) };
        std::thread::sleep(wait);
        if r.daily {
            let mut cur = log.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = log.rotate(&mut cur) {
                drop(cur);
                log::error!("rotating {}: {e}", log.path.display());
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("starting the log rotation: {e}");
    }
}

pub fn filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Emerg | LogLevel::Alert | LogLevel::Crit | LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Notice | LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
    }
}

/// Installs the process-wide logger (once; later calls are ignored).
pub fn init(logs_dir: &Path, name: &str, level: LogLevel, echo: bool, rotation: LogRotation) -> std::io::Result<()> {
    std::fs::create_dir_all(logs_dir)?;
    if LOG_FILE.set(LogFile::new(logs_dir.join(format!("{name}.log")), rotation)?).is_err() {
        return Ok(());
    }
    let logger = FileLogger { to_file: true, echo, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
    if let Some(log) = LOG_FILE.get() {
        rotation_thread(log);
    }
    Ok(())
}

/// Opens the access log `<logs_dir>/<name>.log` (once; later calls are ignored).
pub fn init_access(logs_dir: &Path, name: &str, rotation: LogRotation) -> std::io::Result<()> {
    std::fs::create_dir_all(logs_dir)?;
    if ACCESS_FILE.set(LogFile::new(logs_dir.join(format!("{name}.log")), rotation)?).is_ok() {
        if let Some(log) = ACCESS_FILE.get() {
            rotation_thread(log);
        }
    }
    Ok(())
}

/// Whether [`access`] writes anywhere.
pub fn access_enabled() -> bool {
    ACCESS_FILE.get().is_some()
}

/// One access log line, stamped as C stamps it (`[YYYY-MM-DD HH:MM:SS] text`).
pub fn access(text: &str) {
    if let Some(log) = ACCESS_FILE.get() {
        log.write_line(&format!("[{}] {text}\n", local_datetime()));
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts writing to a fresh file at the log's path (after logrotate moved the old one); on
/// failure the old handle stays. Does nothing for processes without a log file.
pub fn reopen() -> std::io::Result<()> {
    for log in [LOG_FILE.get(), ACCESS_FILE.get()].into_iter().flatten() {
        log.reopen()?;
    }
    Ok(())
}

/// For the client tools: errors to stderr only.
pub fn init_stderr(level: LogLevel) {
    let logger = FileLogger { to_file: false, echo: true, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
}
