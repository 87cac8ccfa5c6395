//! The daemons' log, on `tracing`: `<base_path>/logs/<name>.log`, lines as FastDFS writes them
//! (`[YYYY-MM-DD HH:MM:SS] LEVEL - message`, local time, C's level names), filtered by
//! `log_level`, written by `tracing-appender`'s non-blocking writer (a worker thread does the
//! file I/O; it blocks rather than drop lines when it falls behind). In the foreground the lines
//! also go to stderr, so tests and systemd see them. [`reopen`] (on
//! SIGHUP) starts a new file under the same name, so logrotate can move the old one away. The
//! daemon rotates the log itself as libfastcommon does ([`LogRotation`], the `log_file_*`
//! keys): daily at the rotation time and/or at a size, the old file renamed
//! `<name>.log.<YYYYMMDD_HHMMSS>`, rotated files older than `log_file_keep_days` removed at
//! `log_file_delete_old_time`, gzipped once old enough with `log_file_compress_old`. The
//! storage's access log (`use_access_log`) is a second file with the same handling, stamped
//! to the millisecond or microsecond and headed by C's column names.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{Local, NaiveTime, TimeZone};
use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{filter_fn, FilterFn, LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogLevel, LogRotation, TimePrecision};
use crate::locked::MutexExt;

/// The open file and how much of it is written.
struct Current {
    file: File,
    len: u64,
}

impl Current {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = open(path)?;
        let len = file.metadata()?.len();
        Ok(Current { file, len })
    }
}

/// How finely a log stamps its lines: the error log to the second, the access log to the
/// millisecond or microsecond (`[access-log] time_precision`), as libfastcommon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Seconds,
    Millis,
    Micros,
}

impl Stamp {
    fn now(self) -> String {
        let now = Local::now();
        match self {
            Stamp::Seconds => now.format("%Y-%m-%d %H:%M:%S").to_string(),
            Stamp::Millis => now.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            Stamp::Micros => now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        }
    }
}

/// The daemon's log file: where it is, the handle lines go to, and its rotation.
struct LogFile {
    path: PathBuf,
    current: Mutex<Current>,
    rotation: LogRotation,
    stamp: Stamp,
    /// Written first in every new file (C's access log names its columns).
    header: Option<&'static str>,
}

/// Set once by [`init`]; [`reopen`] and rotation swap the handle inside.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();
/// The storage's access log (`use_access_log`), set once by [`init`].
static ACCESS_FILE: OnceLock<LogFile> = OnceLock::new();
/// The access log times requests in microseconds (`time_precision = us`), else milliseconds.
static ACCESS_IN_MICROS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The access log's column names, as C 6.16.1 writes them at the top of each new file (the
/// time column keeps its `_ms` name in microsecond mode, as C's).
const ACCESS_HEADER: &str = "client_ip action filename status time_used_ms req_len resp_len";

/// `YYYY-MM-DD HH:MM:SS` in local time, as FastDFS stamps its log lines.
pub fn local_datetime() -> String {
    Stamp::Seconds.now()
}

impl LogFile {
    fn new(path: PathBuf, rotation: LogRotation, stamp: Stamp, header: Option<&'static str>) -> std::io::Result<Self> {
        let log = LogFile { current: Mutex::new(Current::open(&path)?), path, rotation, stamp, header };
        log.head(&mut log.current.locked());
        Ok(log)
    }

    /// The header line, if this log has one and the file is new.
    fn head(&self, cur: &mut Current) {
        if let (Some(h), 0) = (self.header, cur.len) {
            let line = format!("[{}] {h}\n", self.stamp.now());
            if cur.file.write_all(line.as_bytes()).is_ok() {
                cur.len += line.len() as u64;
            }
        }
    }

    /// Appends whole lines; rotates once the file reaches the rotation size.
    fn write_lines(&self, lines: &[u8]) {
        let mut cur = self.current.locked();
        if cur.file.write_all(lines).is_ok() {
            cur.len += lines.len() as u64;
        }
        if self.rotation.max_size > 0 && cur.len >= self.rotation.max_size {
            let _ = self.rotate(&mut cur);
        }
    }

    /// Starts writing to a fresh file at the path; on failure the old handle stays.
    fn reopen(&self) -> std::io::Result<()> {
        let mut fresh = Current::open(&self.path)?;
        self.head(&mut fresh);
        *self.current.locked() = fresh;
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
        *cur = Current::open(&self.path)?;
        self.head(cur);
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
                    tracing::warn!("compressing {}: {err}", e.path().display());
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

/// The daily rotation and clean-up of `log`, on a thread of their own: a new file at the
/// rotation time, rotated files older than `keep_days` removed at the delete time (and at the
/// start), old ones compressed hourly.
fn rotation_thread(log: &'static LogFile) {
    let r = log.rotation;
    if !r.daily && r.keep_days == 0 && !r.compress {
        return;
    }
    let spawned = std::thread::Builder::new().name("log-rotation".into()).spawn(move || {
        log.remove_old();
        loop {
            if r.compress {
                log.compress_old();
            }
            let rotate_in = r.daily.then(|| until_next(r.time));
            let delete_in = (r.keep_days > 0).then(|| until_next(r.delete_time));
            let hourly = Duration::from_secs(3600);
            let wait = [rotate_in, delete_in].into_iter().flatten().fold(hourly, Duration::min);
            std::thread::sleep(wait);
            // Whatever was due by now (both may fall at one time).
            let due = |d: Option<Duration>| d.is_some_and(|d| d <= wait + Duration::from_secs(1));
            if due(rotate_in) {
                let mut cur = log.current.locked();
                if let Err(e) = log.rotate(&mut cur) {
                    drop(cur);
                    tracing::error!("rotating {}: {e}", log.path.display());
                }
            }
            if due(delete_in) {
                log.remove_old();
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("starting the log rotation: {e}");
    }
}

/// `log_level` as a tracing level.
pub fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Emerg | LogLevel::Alert | LogLevel::Crit | LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Notice | LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

/// The target of access log events: they go to the access log only.
const ACCESS: &str = "fdfs_access";

/// The level the log passes (a tracing level as 1 = ERROR ... 4 = DEBUG), changed by SIGHUP.
static LEVEL: AtomicU8 = AtomicU8::new(3);

fn level_code(l: LevelFilter) -> u8 {
    match l.into_level() {
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) | Some(Level::TRACE) => 4,
        None => 0,
    }
}

/// Sets the level the daemon's log passes from now on.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level_code(filter(level)), Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// The daemon's lines: not the access log's, and at the current level.
fn daemon_lines() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|m| {
        m.target() != ACCESS && level_code(LevelFilter::from_level(*m.level())) <= LEVEL.load(Ordering::Relaxed)
    })
}

/// FastDFS's line: `[YYYY-MM-DD HH:MM:SS] LEVEL - message` (the access log's without the
/// level), local time, libfastcommon's level names.
struct FastdfsLine {
    level: bool,
    stamp: Stamp,
}

impl<S, N> FormatEvent<S, N> for FastdfsLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(w, "[{}] ", self.stamp.now())?;
        if self.level {
            let name = match *event.metadata().level() {
                Level::ERROR => "ERROR",
                Level::WARN => "WARNING",
                Level::INFO => "INFO",
                Level::DEBUG | Level::TRACE => "DEBUG",
            };
            write!(w, "{name} - ")?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// The non-blocking appender's destination: one of our files (rotation and reopen included).
struct FileWriter(&'static LogFile);

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_lines(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps the log's writer threads: dropping it (at the daemon's exit) writes what is queued.
#[must_use = "the log loses its last lines when this is dropped early"]
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

/// A non-blocking writer into `log`, and the guard of its thread.
fn appender(log: &'static LogFile, thread: &str) -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name(thread)
        .finish(FileWriter(log))
}

/// Installs the process-wide log: `<logs_dir>/<name>.log` at `level` (also on stderr with
/// `echo`), and with `access` the storage's access log `<logs_dir>/storage_access.log`. Once
/// per process (later calls change nothing).
pub fn init(
    logs_dir: &Path,
    name: &str,
    level: LogLevel,
    echo: bool,
    rotation: LogRotation,
    access: Option<(LogRotation, TimePrecision)>,
) -> std::io::Result<LogGuard> {
    std::fs::create_dir_all(logs_dir)?;
    let _ = LOG_FILE.set(LogFile::new(logs_dir.join(format!("{name}.log")), rotation, Stamp::Seconds, None)?);
    let log = LOG_FILE.get().ok_or_else(|| std::io::Error::other("log not set"))?;
    set_level(level);
    let (main, main_guard) = appender(log, "log-writer");
    let mut guards = vec![main_guard];
    let file_layer = fmt::layer()
        .event_format(FastdfsLine { level: true, stamp: Stamp::Seconds })
        .with_ansi(false)
        .with_writer(main)
        .with_filter(daemon_lines());
    let echo_layer = echo.then(|| {
        fmt::layer()
            .event_format(FastdfsLine { level: true, stamp: Stamp::Seconds })
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_filter(daemon_lines())
    });
    let access_layer = match access {
        Some((r, precision)) => {
            let stamp = match precision {
                TimePrecision::Millis => Stamp::Millis,
                TimePrecision::Micros => Stamp::Micros,
            };
            ACCESS_IN_MICROS.store(stamp == Stamp::Micros, Ordering::Relaxed);
            let path = logs_dir.join("storage_access.log");
            let _ = ACCESS_FILE.set(LogFile::new(path, r, stamp, Some(ACCESS_HEADER))?);
            let file = ACCESS_FILE.get().ok_or_else(|| std::io::Error::other("access log not set"))?;
            let (w, g) = appender(file, "access-log-writer");
            guards.push(g);
            let only_access = Targets::new().with_target(ACCESS, LevelFilter::INFO);
            Some(
                fmt::layer()
                    .event_format(FastdfsLine { level: false, stamp })
                    .with_ansi(false)
                    .with_writer(w)
                    .with_filter(only_access),
            )
        }
        None => None,
    };
    if tracing_subscriber::registry().with(file_layer).with(echo_layer).with(access_layer).try_init().is_ok() {
        for f in [LOG_FILE.get(), ACCESS_FILE.get()].into_iter().flatten() {
            rotation_thread(f);
        }
    }
    Ok(LogGuard { _guards: guards })
}

/// Whether [`access`] writes anywhere.
pub fn access_enabled() -> bool {
    ACCESS_FILE.get().is_some()
}

/// One access log line (stamped as C stamps it: `[YYYY-MM-DD HH:MM:SS.mmm] text`, or to the
/// microsecond).
pub fn access(text: &str) {
    tracing::info!(target: ACCESS, "{text}");
}

/// A request's time for the access log, in its unit (milliseconds, or microseconds with
/// `time_precision = us`, as C).
pub fn access_time_used(d: Duration) -> u128 {
    if ACCESS_IN_MICROS.load(Ordering::Relaxed) {
        d.as_micros()
    } else {
        d.as_millis()
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts writing to a fresh file at each log's path (after logrotate moved the old one); on
/// failure the old handle stays. Does nothing for processes without a log file.
pub fn reopen() -> std::io::Result<()> {
    for log in [LOG_FILE.get(), ACCESS_FILE.get()].into_iter().flatten() {
        log.reopen()?;
    }
    Ok(())
}

/// For the client tools: to stderr only, at `level`.
pub fn init_stderr(level: LogLevel) {
    let layer = fmt::layer()
        .event_format(FastdfsLine { level: true, stamp: Stamp::Seconds })
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(filter(level));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
