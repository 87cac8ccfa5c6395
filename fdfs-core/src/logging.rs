//! The daemons' log: `<base_path>/logs/<name>.log`, lines as FastDFS writes them
//! (`[YYYY-MM-DD HH:MM:SS] LEVEL - message`), filtered by `log_level`. In the foreground the
//! lines also go to stderr, so tests and systemd see them. [`reopen`] (on SIGHUP) starts a new
//! file under the same name, so logrotate can move the old one away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::config::LogLevel;

/// The daemon's log file: where it is, and the handle lines go to.
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

/// Set once by [`init`]; [`reopen`] swaps the handle inside.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

struct FileLogger {
    to_file: bool,
    echo: bool,
    level: log::LevelFilter,
}

impl log::Log for FileLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "[{}] {} - {}\n",
            crate::timefmt::datetime(crate::timefmt::now_unix()),
            record.level(),
            record.args()
        );
        if let Some(log) = LOG_FILE.get().filter(|_| self.to_file) {
            if let Ok(mut f) = log.file.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if self.echo {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
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
pub fn init(logs_dir: &Path, name: &str, level: LogLevel, echo: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(logs_dir)?;
    let path = logs_dir.join(format!("{name}.log"));
    let file = open(&path)?;
    if LOG_FILE.set(LogFile { path, file: Mutex::new(file) }).is_err() {
        return Ok(());
    }
    let logger = FileLogger { to_file: true, echo, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
    Ok(())
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts writing to a fresh file at the log's path (after logrotate moved the old one); on
/// failure the old handle stays. Does nothing for processes without a log file.
pub fn reopen() -> std::io::Result<()> {
    let Some(log) = LOG_FILE.get() else { return Ok(()) };
    let fresh = open(&log.path)?;
    *log.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
    Ok(())
}

/// For the client tools: errors to stderr only.
pub fn init_stderr(level: LogLevel) {
    let logger = FileLogger { to_file: false, echo: true, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
}
