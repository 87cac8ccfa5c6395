//! Process lifecycle shared by `fdfs_trackerd` and `fdfs_storaged`, as the C daemons behave:
//! `CONF [start|stop|restart]`, a pid file in `<base_path>/data/`, `stop` signals and waits.
//! `start` re-executes the program detached (own process group, no terminal) in `foreground`
//! mode, which is also what tests and systemd run directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A daemon's `main`: runs `f`, prints and logs its error, exits 1 on failure.
pub fn main(prog: &str, f: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    match f() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prog}: {e:#}");
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// Run in this process, logging to stderr as well (tests, systemd `Type=simple`).
    Foreground,
}

/// `PROG CONF [start|stop|restart|foreground]`; no action means start, as the originals.
pub fn parse_args(prog: &str) -> Result<(PathBuf, Action)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || format!("Usage: {prog} <config_file> [start | stop | restart | foreground]");
    let conf = args.first().with_context(usage)?;
    let action = match args.get(1).map(String::as_str) {
        None | Some("start") => Action::Start,
        Some("stop") => Action::Stop,
        Some("restart") => Action::Restart,
        Some("foreground") | Some("-f") => Action::Foreground,
        Some(other) => bail!("unknown action {other:?}\n{}", usage()),
    };
    Ok((PathBuf::from(conf), action))
}

/// How long `start` waits for the daemon to listen.
const START_WAIT: Duration = Duration::from_secs(60);

pub fn pid_file(base_path: &Path, prog: &str) -> PathBuf {
    base_path.join("data").join(format!("{prog}.pid"))
}

fn read_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    (pid > 0).then(|| Pid::from_raw(pid))
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

/// The running instance, if its pid file names a live process.
pub fn running(base_path: &Path, prog: &str) -> Option<Pid> {
    read_pid(&pid_file(base_path, prog)).filter(|&p| alive(p))
}

/// Handles start/stop/restart; returns `true` when the caller should run in this process.
pub fn dispatch(prog: &str, conf: &Path, action: Action, base_path: &Path) -> Result<bool> {
    match action {
        Action::Foreground => {
            if let Some(pid) = running(base_path, prog) {
                bail!("{prog} already running, pid {pid}");
            }
            Ok(true)
        }
        Action::Start => {
            start(prog, conf, base_path)?;
            Ok(false)
        }
        Action::Stop => {
            stop(prog, base_path)?;
            Ok(false)
        }
        Action::Restart => {
            if running(base_path, prog).is_some() {
                stop(prog, base_path)?;
            }
            start(prog, conf, base_path)?;
            Ok(false)
        }
    }
}

fn start(prog: &str, conf: &Path, base_path: &Path) -> Result<()> {
    if let Some(pid) = running(base_path, prog) {
        bail!("{prog} already running, pid {pid}");
    }
    let exe = std::env::current_exe().context("locating this program")?;
    let conf = std::fs::canonicalize(conf).with_context(|| format!("{}", conf.display()))?;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .arg(&conf)
        .arg("foreground")
        .env("FDFS_DAEMONIZED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the daemon")?;
    // Wait until it wrote its pid file (it is listening then), or died. A first start creates
    // the store paths' 65,536 directories, which a busy disk can take well over ten seconds for.
    let deadline = Instant::now() + START_WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("{prog} exited at start ({status}); see {}", base_path.join("logs").display());
        }
        if read_pid(&pid_file(base_path, prog)) == Some(Pid::from_raw(child.id() as i32)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{prog} did not come up within {START_WAIT:?}; see {}", base_path.join("logs").display())
}

fn stop(prog: &str, base_path: &Path) -> Result<()> {
    let path = pid_file(base_path, prog);
    let Some(pid) = read_pid(&path) else { bail!("{prog} is not running (no pid file {})", path.display()) };
    if !alive(pid) {
        let _ = std::fs::remove_file(&path);
        bail!("{prog} is not running (stale pid {pid})");
    }
    kill(pid, Signal::SIGTERM).with_context(|| format!("signalling pid {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(pid) {
        if Instant::now() > deadline {
            bail!("{prog} (pid {pid}) did not stop within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Written by the running daemon once it listens; removed on exit.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(base_path: &Path, prog: &str) -> Result<Self> {
        let path = pid_file(base_path, prog);
        std::fs::create_dir_all(path.parent().expect("data dir"))?;
        let tmp = path.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&tmp, &path)?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `run_by_group` / `run_by_user`: once its port is bound the daemon takes that group and user,
/// as C's daemons do, so everything it creates from then on (logs, state files, stored files)
/// is theirs: base_path and the store paths must be writable by them. Without `run_by_group`
/// the user's primary group is taken.
pub fn run_as(group: &str, user: &str) -> Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Group, Uid, User};
    if group.is_empty() && user.is_empty() {
        return Ok(());
    }
    let account = match user {
        "" => None,
        name => Some(User::from_name(name)?.with_context(|| format!("run_by_user: no user {name}"))?),
    };
    let gid = match group {
        "" => account.as_ref().map(|u| u.gid),
        name => Some(Group::from_name(name)?.with_context(|| format!("run_by_group: no group {name}"))?.gid),
    };
    // Already that user and group (a daemon started by them): nothing to drop, and no root
    // needed to drop it.
    if account.as_ref().is_none_or(|u| u.uid == Uid::current()) && gid.is_none_or(|g| g == Gid::current()) {
        return Ok(());
    }
    if let Some(gid) = gid {
        setgroups(&[gid]).context("run_by_group: dropping supplementary groups (the daemon must start as root)")?;
        setgid(gid).context("run_by_group")?;
    }
    if let Some(u) = account {
        setuid(u.uid).context("run_by_user (the daemon must start as root)")?;
    }
    Ok(())
}

/// Binds `bind_addr:port` (every address when `bind_addr` is empty).
/// Opens `<base_path>/logs/<name>.log` (also to stderr in the foreground; with `access` the
/// storage's access log too) and logs what the config found worth saying. Keep the guard
/// until the daemon exits.
pub fn start_logging(
    base_path: &Path,
    name: &str,
    level: crate::config::LogLevel,
    rotation: crate::config::LogRotation,
    access: Option<(crate::config::LogRotation, crate::config::TimePrecision)>,
    foreground: bool,
    warnings: &[String],
) -> Result<crate::logging::LogGuard> {
    let guard = crate::logging::init(&base_path.join("logs"), name, level, foreground, rotation, access)
        .with_context(|| format!("opening the log in {}", base_path.display()))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(guard)
}

pub async fn bind(bind_addr: &str, port: u16) -> Result<tokio::net::TcpListener> {
    let host = if bind_addr.is_empty() { "0.0.0.0" } else { bind_addr };
    let bind = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            match crate::server::PeerStream::listen(addr) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address")))
    };
    bind.await.with_context(|| format!("binding {host}:{port}"))
}

/// Runs a bound server until SIGTERM/SIGINT/SIGQUIT: writes the pid file (which is what
/// `start` waits for), announces the address on stdout (tests read it), then triggers the
/// shutdown signal and waits for `serve` to finish.
///
/// SIGHUP reopens the log files and calls `log_level` (the config file read again) for the
/// one setting a running daemon takes over: `log_level`. Everything else needs a restart.
pub async fn serve_until_signal<F, Fut>(
    prog: &str,
    base_path: &Path,
    listener: tokio::net::TcpListener,
    log_level: impl Fn() -> Result<crate::config::LogLevel>,
    serve: F,
) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener, crate::server::Shutdown) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    // Handlers first: a SIGHUP (logrotate) right after start must not kill the daemon.
    let signals = StopSignals::install();
    let _pid = PidFile::create(base_path, prog)?;
    tracing::info!("{prog} {} listening on {addr}", env!("CARGO_PKG_VERSION"));
    println!("{prog} listening on {addr}");
    let (trigger, shutdown) = crate::server::shutdown_pair();
    let task = tokio::spawn(serve(listener, shutdown));
    signals
        .wait(|| match log_level() {
            Ok(level) => {
                crate::logging::set_level(level);
                tracing::info!("SIGHUP: log_level is {level:?} (other settings take effect at a restart)");
            }
            Err(e) => tracing::error!("SIGHUP: reading the config again: {e:#}; the running settings stay"),
        })
        .await;
    tracing::info!("stopping");
    trigger.trigger();
    task.await?;
    Ok(())
}

/// Resolves on SIGTERM, SIGINT or SIGQUIT. SIGHUP reopens the log file (logrotate's
/// `postrotate`); SIGPIPE is ignored.
pub async fn wait_for_stop_signal() {
    StopSignals::install().wait(|| {}).await
}

/// The daemon's signal handlers, installed before it announces itself.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            quit: signal(SignalKind::quit()).expect("SIGQUIT handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    /// Until a stop signal; each SIGHUP reopens the logs, then `on_hup`.
    async fn wait(self, on_hup: impl Fn()) {
        let StopSignals { mut term, mut int, mut quit, mut hup } = self;
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = quit.recv() => return,
                _ = hup.recv() => {
                    match crate::logging::reopen() {
                        Ok(()) => tracing::info!("SIGHUP: log file reopened"),
                        Err(e) => tracing::error!("SIGHUP: reopening the log file failed: {e}; still writing to the old one"),
                    }
                    on_hup();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_as_the_user_already_running_needs_nothing() {
        let me = nix::unistd::User::from_uid(nix::unistd::Uid::current()).unwrap().expect("current user");
        run_as("", "").unwrap();
        run_as("", &me.name).unwrap();
        assert_eq!(nix::unistd::Uid::current(), me.uid, "unchanged");
        assert!(run_as("", "no-such-user-fdfs").is_err(), "an unknown user stops the start");
    }
}
