//! `fdfs_trackerd <tracker.conf> [start|stop|restart|foreground]`
//!
//! `port = 0` in the config binds an ephemeral port; the bound address is printed on stdout
//! (`fdfs_trackerd listening on ADDR`) so tests can find it.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use fdfs_core::config::TrackerConfig;
use fdfs_core::daemon;
use fdfs_core::server::ConnectionThreads;
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
    // Connections are served on `work_threads` threads of their own (server::threads); this
    // runtime accepts and runs the tracker's own tasks.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = daemon::bind(&config.bind_addr, config.port).await?;
        // Bound: from here on as run_by_user, who then owns the log and the state files.
        daemon::run_as(&config.run_by_group, &config.run_by_user)?;
        let c = &config;
        let _log = daemon::start_logging(
            &c.base_path,
            "trackerd",
            c.log_level,
            c.log_rotation,
            None,
            foreground,
            &c.warnings,
        )?;
        let base_path = config.base_path.clone();
        let threads = ConnectionThreads::start("tracker", config.work_threads.clamp(1, 64), 64)?;
        let tracker = Arc::new(Tracker::new(config)?);
        let level = move || Ok(TrackerConfig::load(&conf)?.log_level);
        daemon::serve_until_signal(PROG, &base_path, listener, level, move |l, sd| {
            tracker::run(l, threads, tracker, sd)
        })
        .await
    })
}
