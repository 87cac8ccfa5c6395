//! `fdfs_storaged <storage.conf> [start|stop|restart|foreground]`
//!
//! `port = 0` binds an ephemeral port; the bound address is printed on stdout
//! (`fdfs_storaged listening on ADDR`) so tests can find it.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use fdfs_core::config::StorageConfig;
use fdfs_core::daemon;
use fdfs_core::server::ConnectionThreads;
use fdfs_core::storage::{self, StorageServer};

const PROG: &str = "fdfs_storaged";

fn main() -> ExitCode {
    daemon::main(PROG, real_main)
}

fn real_main() -> Result<()> {
    let (conf, action) = daemon::parse_args(PROG)?;
    let mut config = StorageConfig::load(&conf)?;
    if config.disabled {
        bail!("{} says disabled = true", conf.display());
    }
    if !daemon::dispatch(PROG, &conf, action, &config.base_path)? {
        return Ok(());
    }
    let foreground = std::env::var_os("FDFS_DAEMONIZED").is_none();
    // Connections are served on `work_threads` threads of their own (server::threads); this
    // runtime accepts and runs the daemon's own tasks.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(config.blocking_threads())
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = daemon::bind(&config.bind_addr, config.port).await?;
        // Bound: from here on as run_by_user, who then owns the log, the state and the files.
        daemon::run_as(&config.run_by_group, &config.run_by_user)?;
        let c = &config;
        let access = c.use_access_log.then_some((c.access_log_rotation, c.access_time_precision));
        let _log = daemon::start_logging(
            &c.base_path,
            "storaged",
            c.log_level,
            c.log_rotation,
            access,
            foreground,
            &c.warnings,
        )?;
        // With port 0 the trackers must learn the port actually bound.
        config.port = listener.local_addr()?.port();
        if config.group_name.is_empty() {
            // Storage-ID mode: the trackers' storage_ids.conf names our group (109).
            config.group_name = storage::report::group_name_from_trackers(&config)
                .await
                .map_err(|e| anyhow::anyhow!("group_name is empty and no tracker named our group: {e}"))?;
            tracing::info!("group_name {} (from the tracker's storage_ids.conf)", config.group_name);
        }
        let base_path = config.base_path.clone();
        let threads = ConnectionThreads::start("storage", config.work_threads.clamp(1, 64), config.blocking_threads())?;
        let server = Arc::new(StorageServer::open(config)?);
        let level = move || Ok(StorageConfig::load(&conf)?.log_level);
        daemon::serve_until_signal(PROG, &base_path, listener, level, move |l, sd| storage::run(l, threads, server, sd))
            .await
    })
}
