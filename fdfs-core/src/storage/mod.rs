//! `fdfs_storaged`: the storage daemon (PROTOCOL.md §4, §5, §6.1, §7.2).
//!
//! [`StorageServer`] holds what connections share; [`service`] reads requests off sockets,
//! [`ops`] performs them on disk, [`report`] keeps every tracker informed. Counters are
//! atomics and the binlog has its own short lock, so uploads on different connections never
//! wait for each other.
//!
//! An upload, from the socket to the other members:
//! 1. [`service`] reads the header and `request` decodes the head into a `Request`; the content
//!    stays on the socket, read through a [`content::Content`] (length, deadline, CRC32).
//! 2. [`ops`]`::upload` receives the content (in memory when small, else streamed into a temp
//!    file of its store path), picks a fresh name (`ops/names.rs`), or with de-duplication a
//!    source ([`dedup`]); in trunk mode [`trunk`] reserves a slot from the trunk server.
//! 3. [`disk`] publishes it in a writer job of the store path: file, directory entry and the
//!    [`binlog`] record synced in one group-commit round (the trunk binlog with it,
//!    `trunk_log`), then the client is answered.
//! 4. [`sync`] (one sender per member) reads the binlog from its mark and replays the record on
//!    each member, whose [`replica`] stores it and records it in its own binlog.
//!
//! Where a name's bytes are (its regular file, trunk slot or link) is decided once per request
//! by [`located`], which needs the store paths alone. Beside the protocol, [`http`] serves the
//! nginx module's requests for thumbnails ([`thumbnail`]) and uploads over HTTP
//! ([`http_upload`]) on `http_listen`.

mod answer;
pub mod binlog;
mod body;
pub mod content;
pub mod dedup;
pub mod disk;
pub mod disk_recovery;
pub mod http;
pub mod http_upload;
mod identity;
pub mod listing;
pub mod live;
pub mod located;
pub mod locks;
pub mod metrics;
pub mod ops;
mod params;
pub mod paths;
pub mod recover;
pub mod replica;
pub mod report;
mod request;
pub mod retention;
pub mod service;
pub mod stats;
pub mod sync;
pub mod thumbnail;
pub mod trunk;
mod trunk_log;
pub mod tus;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::StorageConfig;
use crate::locked::MutexExt;
use crate::server::{serve, ConnectionLimits, ConnectionThreads, Shutdown};
use crate::timefmt::now_unix;
use binlog::Binlog;
pub use identity::{Identity, Membership};
pub use params::{TrackerParams, TrunkAdvance, TrunkCompress};
use paths::StorePaths;
use stats::{InitFlag, Stats};

/// Why a storage cannot open its state and start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("group_name is required (with storage IDs the daemon asks the tracker for it first)")]
    NoGroupName,
    #[error(
        "store path {index} ({}) carries another storage's mark (data/.fastdfs_vars); if this disk is meant \
         for this storage, remove that file (its files are then recovered from the group) or set \
         check_store_path_mark = false",
        root.display()
    )]
    ForeignStorePath { index: usize, root: std::path::PathBuf },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Dedup(#[from] dedup::IndexError),
}

/// What every connection and task of a storage shares. Settings and the store are public
/// (read-only or internally synchronised); the state that changes is private behind methods.
#[derive(Debug)]
pub struct StorageServer {
    pub config: StorageConfig,
    pub group: String,
    /// The store paths, and where a name's bytes are in them ([`located`]).
    pub paths: Arc<StorePaths>,
    pub binlog: Arc<Binlog>,
    /// Where every filesystem call of a request runs.
    pub disk: disk::Disk,
    /// Counters: changed by [`Stats::record`] for requests, by the tasks that own the others.
    pub stats: Stats,
    /// What `metrics_listen` serves.
    pub metrics: crate::metrics::Metrics,
    pub up_time: i64,
    data_dir: PathBuf,
    /// Who this storage is (address, ID, the trackers' parameters).
    pub identity: Identity,
    /// Where it stands in its group (status, members, replication progress).
    pub membership: Membership,
    /// Serialises changes to one file (append/modify/truncate/regenerate, replicated ranges).
    file_locks: locks::FileLocks,
    /// Woken on every committed batch of binlog records, so sync senders ship changes at once.
    binlog_changed: Arc<tokio::sync::Notify>,
    /// Trunk files: the trunk binlog, and the free space while this is the trunk server.
    trunk: trunk::Trunk,
    /// Store paths still to recover from a peer; `recovery_done` turns true when none are.
    recovering: Mutex<std::collections::BTreeSet<usize>>,
    recovery_done: tokio::sync::watch::Sender<bool>,
    /// The de-duplication index: open with `check_file_duplicate`, and whenever one exists
    /// (links made while it was on are counted even after it is turned off).
    pub dedup: Option<dedup::DedupIndex>,
    /// Which trunk slots hold a live file (kept from the binlog; read by downloads and the
    /// nginx module).
    pub live: Arc<live::LiveIndex>,
    /// This host's interface addresses, read at start.
    own_ips: Vec<std::net::IpAddr>,
    /// Thumbnails made on request (`http_listen` with `thumbnail_config`), when on.
    thumbnails: Option<thumbnail::Maker>,
}

impl StorageServer {
    pub fn open(config: StorageConfig) -> Result<Self, OpenError> {
        if config.group_name.is_empty() {
            return Err(OpenError::NoGroupName);
        }
        let data_dir = config.base_path.join("data");
        std::fs::create_dir_all(&data_dir)?;
        crate::durable::remove_stale_temps(&data_dir);
        crate::durable::remove_stale_temps(&data_dir.join("sync"));
        std::fs::create_dir_all(config.base_path.join("logs"))?;
        let stats = Stats::default();
        let cursor = stats.load(&data_dir);
        let recovering = Self::disks_to_recover(&config, &data_dir)?;
        let paths = StorePaths::open(
            &config.store_paths,
            &config.store_path_readonly,
            config.subdir_count_per_path,
            config.file_distribute_rotate_count,
            config.file_distribute_path_mode == 1,
            cursor,
        )?;
        let binlog = Arc::new(Binlog::open(&data_dir.join("sync"))?);
        match recover::record_unlogged(&paths, &binlog) {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!("{n} file(s) published just before the last stop were missing from the binlog; recorded")
            }
            Err(e) => tracing::error!("checking the store for files missing from the binlog: {e}"),
        }
        let live = Arc::new(live::LiveIndex::open(&paths, binlog.dir(), binlog.position())?);
        binlog.observe(live.clone());
        let binlog_changed = Arc::new(tokio::sync::Notify::new());
        let temp_dirs = (0..paths.paths.len()).map(|i| paths.temp_dir(i)).collect();
        let trunk = trunk::Trunk::open(&data_dir.join("trunk"), &config)?;
        let disk = disk::Disk::open(&config, temp_dirs, binlog.clone(), trunk.log.clone(), binlog_changed.clone())?;
        let now = now_unix();
        let mut init = InitFlag::load(&data_dir).unwrap_or(InitFlag { storage_join_time: now, ..Default::default() });
        let my_ip = if config.bind_addr.is_empty() { init.last_ip_addr.clone() } else { config.bind_addr.clone() };
        mark_store_paths(&paths, &mut init, (&my_ip, config.port), now)?;
        init.save(&data_dir)?;
        let previous_ip = init.last_ip_addr.clone();
        let dedup = open_dedup(&config, &data_dir, &paths, &binlog)?;
        Ok(Self {
            group: config.group_name.clone(),
            paths: Arc::new(paths),
            binlog,
            disk,
            stats,
            metrics: crate::metrics::Metrics::new(metrics::GAUGES),
            up_time: now,
            data_dir,
            identity: Identity::new(my_ip, config.server_id.clone(), init, previous_ip),
            membership: Membership::default(),
            file_locks: locks::FileLocks::default(),
            binlog_changed,
            trunk,
            recovery_done: tokio::sync::watch::Sender::new(recovering.is_empty()),
            recovering: Mutex::new(recovering),
            dedup,
            live,
            own_ips: crate::net::interface_ips().into_iter().map(|ip| ip.to_canonical()).collect(),
            thumbnails: config.thumbnail.enabled.then(|| thumbnail::Maker::new(config.thumbnail.clone())),
            config,
        })
    }

    /// Whether new uploads are de-duplicated.
    pub fn dedup_uploads(&self) -> Option<&dedup::DedupIndex> {
        self.dedup.as_ref().filter(|_| self.config.check_file_duplicate)
    }

    /// The store paths to recover: those an interrupted recovery left, and those without their
    /// directory tree on a storage that had joined before (its disk replaced or wiped). A
    /// store path carrying another storage's mark stops the start (`check_store_path_mark`).
    /// Written to the flag file before anything under them is created.
    fn disks_to_recover(
        config: &StorageConfig,
        data_dir: &std::path::Path,
    ) -> Result<std::collections::BTreeSet<usize>, OpenError> {
        let init = InitFlag::load(data_dir);
        let mut todo = disk_recovery::pending(data_dir);
        for (i, root) in config.store_paths.iter().enumerate() {
            let known = init.as_ref().and_then(|f| f.other(&format!("store_path_mark{i}")).map(str::to_owned));
            if let (Some(known), Some(on_disk)) = (&known, disk_recovery::disk_mark(root)) {
                if *known != on_disk && config.check_store_path_mark {
                    return Err(OpenError::ForeignStorePath { index: i, root: root.clone() });
                }
            }
            // Its directory tree gone on a storage that had joined: a replaced or wiped disk
            // (a store path that is the base path keeps `data/` for the storage's own state).
            let joined = init.as_ref().is_some_and(|f| f.sync_old_done);
            if joined && !root.join("data/00/00").is_dir() {
                tracing::warn!("store path {i} ({}) has lost its files: recovering it from the group", root.display());
                todo.insert(i);
            }
        }
        disk_recovery::save_pending(data_dir, &todo)?;
        Ok(todo)
    }

    /// The store paths still to recover.
    pub fn recovering(&self) -> std::collections::BTreeSet<usize> {
        self.recovering.locked().clone()
    }

    /// Store path `index` is recovered.
    pub fn path_recovered(&self, index: usize) -> std::io::Result<()> {
        let mut r = self.recovering.locked();
        r.remove(&index);
        disk_recovery::save_pending(&self.data_dir, &r)
    }

    /// Every store path is recovered: the storage may join.
    pub fn recovered(&self) {
        self.recovery_done.send_replace(true);
    }

    /// Resolves once no store path is left to recover.
    pub async fn until_recovered(&self) {
        let mut rx = self.recovery_done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    pub async fn lock_file(&self, path: &std::path::Path) -> locks::FileGuard<'_> {
        self.file_locks.lock(path).await
    }

    /// Writes counters and the directory cursor (`storage_stat.dat`).
    pub fn save_stats(&self) {
        if let Err(e) = self.stats.save(&self.data_dir, self.paths.cursor()) {
            tracing::error!("writing storage_stat.dat: {e}");
        }
    }
}

/// Every store path carries its mark, and `.data_init_flag` a copy (as C writes them): a mark
/// already on the disk is kept, one known only from the flag is written back, a new one is made
/// from this storage's address and port.
fn mark_store_paths(
    paths: &StorePaths,
    init: &mut InitFlag,
    (my_ip, port): (&str, u16),
    now: i64,
) -> std::io::Result<()> {
    for (i, p) in paths.paths.iter().enumerate() {
        let key = format!("store_path_mark{i}");
        let mark = match (disk_recovery::disk_mark(&p.root), init.other(&key).map(str::to_owned)) {
            (Some(on_disk), _) => on_disk,
            (None, known) => {
                let mark = known.unwrap_or_else(|| disk_recovery::new_mark(my_ip, port, i, now));
                disk_recovery::write_disk_mark(&p.root, &mark)?;
                mark
            }
        };
        init.set_other(&key, mark);
    }
    Ok(())
}

/// Opens the de-duplication index (with `check_file_duplicate`, or when one exists), recounted
/// from the store paths' links when it cannot be trusted as it is.
fn open_dedup(
    config: &StorageConfig,
    data_dir: &Path,
    paths: &StorePaths,
    binlog: &Binlog,
) -> Result<Option<dedup::DedupIndex>, OpenError> {
    let file = data_dir.join(dedup::FILE_NAME);
    if !config.check_file_duplicate && !file.exists() {
        return Ok(None);
    }
    let (index, clean) = match dedup::DedupIndex::open(&file, config.file_signature_method) {
        Ok(opened) => opened,
        // A damaged index must not stop the storage: it is only a cache of what the links on
        // disk say. Kept aside for a look, and rebuilt.
        Err(e) => {
            let aside = data_dir.join(format!("{}.damaged-{}", dedup::FILE_NAME, now_unix()));
            tracing::error!("{e}; moved to {} and rebuilt from the store paths", aside.display());
            std::fs::rename(&file, &aside)?;
            dedup::DedupIndex::open(&file, config.file_signature_method)?
        }
    };
    if !clean {
        recount_links(paths, binlog, &index)?;
    }
    Ok(Some(index))
}

/// Makes the de-duplication index agree with the links in the store paths (symbolic links, and
/// link slots in trunk files).
fn recount_links(paths: &StorePaths, binlog: &Binlog, index: &dedup::DedupIndex) -> Result<(), OpenError> {
    let mut found = dedup::count_links(paths, |target| paths.remote_name_of(target));
    dedup::count_trunk_links(paths, binlog.dir(), binlog.position(), &mut found)?;
    let r = index.reconcile(found, |name| dedup::sign_stored(paths, index.method(), name))?;
    tracing::info!(
        "de-duplication index checked against the store paths: {} reference count(s) corrected, {} source(s) added",
        r.recounted,
        r.signed
    );
    Ok(())
}

/// Serves until `shutdown`: connections (on `threads`), the report loops to every tracker, and
/// the periodic flushes; then syncs and saves the state.
pub async fn run(listener: TcpListener, threads: ConnectionThreads, server: Arc<StorageServer>, shutdown: Shutdown) {
    let own = threads.first().clone();
    let allow = server.config.allow_hosts.clone();
    let mut tasks = vec![own.spawn(disk_recovery::run(server.clone(), shutdown.clone()))];
    if let Some(addr) = server.config.metrics_listen {
        tasks.push(own.spawn(crate::metrics::serve(addr, server.clone(), shutdown.clone())));
    }
    if let Some(addr) = server.config.http_listen {
        tasks.push(own.spawn(http::serve(server.clone(), addr, shutdown.clone())));
    }
    for t in server.config.tracker_servers.clone() {
        tasks.push(own.spawn(report::report_loop(server.clone(), t, shutdown.clone())));
    }
    tasks.push(own.spawn(background(server.clone(), shutdown.clone())));
    tasks.push(own.spawn(retention::run(server.clone(), shutdown.clone())));
    tasks.push(own.spawn(sync::manager(server.clone(), shutdown.clone())));
    tasks.push(own.spawn(trunk::push_loop(server.clone(), shutdown.clone())));
    tasks.push(own.spawn(trunk::schedule_loop(server.clone(), shutdown.clone())));
    tasks.push(own.spawn(trunk::reclaim_loop(server.clone(), shutdown.clone())));
    let s = server.clone();
    let limits = ConnectionLimits {
        max_connections: server.config.max_connections,
        per_ip: server.config.max_connections_per_ip,
        counts: server.stats.conns.clone(),
    };
    serve(listener, allow, limits, &threads, shutdown, move |sock, peer, sd| {
        service::handle(s.clone(), sock, peer, sd)
    })
    .await;
    for t in tasks {
        let _ = t.await;
    }
    if let Err(e) = server.trunk.log.sync_if_dirty().and_then(|()| server.binlog.sync()) {
        tracing::error!("syncing the binlog: {e}");
    }
    server.save_stats();
    if let Some(Err(e)) = server.dedup.as_ref().map(|d| d.close()) {
        tracing::error!("{e}");
    }
    if let Err(e) = server.live.close() {
        tracing::error!("trunk slot index: {e}");
    }
    tracing::info!("storage stopped");
}

async fn background(server: Arc<StorageServer>, mut shutdown: Shutdown) {
    let stats_every = server.config.sync_stat_file_interval.max(Duration::from_secs(1));
    // With `process_crash` the binlog is synced on C's schedule; with `power_loss` every batch is.
    let binlog_every = server.config.sync_binlog_buff_interval.max(Duration::from_secs(1));
    let lazy_binlog = server.disk.durability() == crate::config::Durability::ProcessCrash;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_stats = tokio::time::Instant::now();
    let mut last_binlog_sync = tokio::time::Instant::now();
    // `compress_binlog`: once a day at `compress_binlog_time`, local time.
    let mut compressed_on = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if last_stats.elapsed() >= stats_every {
            last_stats = tokio::time::Instant::now();
            let s = server.clone();
            let _ = tokio::task::spawn_blocking(move || s.save_stats()).await;
        }
        // A member's copy of the trunk binlog (TRUNK_SYNC_BINLOG) is synced here, in both modes.
        if !server.trunk.is_server() {
            let t = server.trunk.log.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.sync_if_dirty()).await {
                tracing::error!("syncing the trunk binlog: {e}");
            }
        }
        if server.config.compress_binlog {
            use chrono::Timelike;
            let now = chrono::Local::now();
            let (h, m) = server.config.compress_binlog_time;
            let due = (now.hour(), now.minute()) >= (u32::from(h), u32::from(m));
            if due && compressed_on != Some(now.date_naive()) {
                compressed_on = Some(now.date_naive());
                let (dir, writing) = (server.binlog.dir().to_owned(), server.binlog.position().0);
                match tokio::task::spawn_blocking(move || binlog::compress_old(&dir, writing)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!("{n} old binlog file(s) compressed"),
                    Ok(Err(e)) => tracing::error!("compressing old binlog files: {e}"),
                    Err(e) => tracing::error!("compressing old binlog files: {e}"),
                }
            }
        }
        if server.dedup.is_some() {
            let s = server.clone();
            if let Ok(Some(Err(e))) =
                tokio::task::spawn_blocking(move || s.dedup.as_ref().map(|d| d.sync_if_dirty())).await
            {
                tracing::error!("{e}");
            }
        }
        if lazy_binlog && last_binlog_sync.elapsed() >= binlog_every {
            last_binlog_sync = tokio::time::Instant::now();
            let (b, t) = (server.binlog.clone(), server.trunk.log.clone());
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.sync_if_dirty().and_then(|()| b.sync())).await {
                tracing::error!("syncing the binlog: {e}");
            }
        }
    }
}
