//! The daemons' log: `<base_path>/logs/<name>.log`, lines as FastDFS writes them
//! (`[YYYY-MM-DD HH:MM:SS] LEVEL - message`), filtered by `log_level`. In the foreground the
//! lines also go to stderr, so tests and systemd see them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::config::LogLevel;

struct FileLogger {
    file: Option<Mutex<File>>,
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
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
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
    let file = OpenOptions::new().create(true).append(true).open(logs_dir.join(format!("{name}.log")))?;
    let logger = FileLogger { file: Some(Mutex::new(file)), echo, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
    Ok(())
}

/// For the client tools: errors to stderr only.
pub fn init_stderr(level: LogLevel) {
    let logger = FileLogger { file: None, echo: true, level: filter(level) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
}
