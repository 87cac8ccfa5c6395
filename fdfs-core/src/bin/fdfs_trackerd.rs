//! `fdfs_trackerd <tracker.conf> [start|stop|restart|foreground]`
//!
//! `port = 0` in the config binds an ephemeral port; the bound address is printed on stdout
//! (`fdfs_trackerd listening on ADDR`) so tests can find it.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fdfs_core::config::TrackerConfig;
use fdfs_core::daemon::{self, PidFile};
use fdfs_core::server::shutdown_pair;
use fdfs_core::tracker::{self, Tracker};

const PROG: &str = "fdfs_trackerd";

fn main() -> ExitCode {
    daemon::main(PROG, real_main)
}

fn real_main() -> Result<()> {
    let (conf, action) = daemon::parse_args(PROG)?;
    let config = TrackerConfig::load(&conf)?;
    if config.disabled {
        bail!("{} says disabled = true", conf.display());
    }
    if !daemon::dispatch(PROG, &conf, action, &config.base_path)? {
        return Ok(());
    }
    let foreground = std::env::var_os("FDFS_DAEMONIZED").is_none();
    fdfs_core::logging::init(&config.base_path.join("logs"), "trackerd", config.log_level, foreground)
        .with_context(|| format!("opening the log in {}", config.base_path.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.work_threads.clamp(1, 64))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let bind = if config.bind_addr.is_empty() { "0.0.0.0" } else { config.bind_addr.as_str() };
        let listener = tokio::net::TcpListener::bind((bind, config.port))
            .await
            .with_context(|| format!("binding {bind}:{}", config.port))?;
        let addr = listener.local_addr()?;
        let base_path = config.base_path.clone();
        let tracker = Arc::new(Tracker::new(config)?);
        let _pid = PidFile::create(&base_path, PROG)?;
        log::info!("{PROG} {} listening on {addr}", env!("CARGO_PKG_VERSION"));
        println!("{PROG} listening on {addr}");
        let (trigger, shutdown) = shutdown_pair();
        let server = tokio::spawn(tracker::run(listener, tracker, shutdown));
        daemon::wait_for_stop_signal().await;
        log::info!("stopping");
        trigger.trigger();
        server.await?;
        Ok(())
    })
}
