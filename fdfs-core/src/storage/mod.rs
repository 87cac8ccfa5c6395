//! `fdfs_storaged`: the storage daemon (PROTOCOL.md §4, §5, §6.1, §7.2).
//!
//! [`StorageServer`] holds what connections share; [`service`] reads requests off sockets,
//! [`ops`] performs them on disk, [`report`] keeps every tracker informed. Counters are
//! atomics and the binlog has its own short lock, so uploads on different connections never
//! wait for each other.

pub mod binlog;
pub mod content;
pub mod dedup;
pub mod disk;
pub mod disk_recovery;
pub mod listing;
pub mod live;
pub mod locks;
pub mod metrics;
pub mod ops;
pub mod paths;
pub mod recover;
pub mod replica;
pub mod report;
pub mod retention;
pub mod service;
pub mod stats;
pub mod sync;
pub mod trunk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{ReservedSpace, StorageConfig};
use crate::file_id::Source;
use crate::protocol::report::Brief;
use crate::protocol::{Layout, Profile};
use crate::server::{serve, ConnectionLimits, ConnectionThreads, Shutdown};
use crate::timefmt::now_unix;
use binlog::Binlog;
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

/// Cluster-wide settings the storage takes from its tracker (PARAMETER_REQ).
#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    pub reserved: ReservedSpace,
    /// `store_path = 2` on the tracker: most free space.
    pub store_path_most_free: bool,
    pub use_storage_id: bool,
    pub id_in_filename: bool,
    /// `response_ip_addr_size` (6.15+ trackers): the IP width of QUERY_FILE_INFO answers.
    pub response_ip_size: usize,
    /// `use_trunk_file`: small uploads go into trunk files.
    pub use_trunk_file: bool,
    /// Slot sizes, alignment, trunk file size and merging.
    pub trunk: crate::trunk::space::TrunkSettings,
    /// When the trunk server compresses its trunk binlog, and how many old ones it keeps.
    pub trunk_compress: TrunkCompress,
    /// `trunk_create_file_*`: trunk files created ahead of need.
    pub trunk_advance: TrunkAdvance,
    /// `storage_ip_changed_auto_adjust` (C's default true): a storage that comes back on a new
    /// address tells the trackers (78) and keeps its identity.
    pub ip_changed_auto_adjust: bool,
    /// `store_slave_file_use_link`: slaves stored as links to a content file of their own.
    pub store_slave_file_use_link: bool,
    /// `delete_unused_trunk_files`: the trunk server retires trunk files with no slot in use,
    /// and every member removes them.
    pub delete_unused_trunk_files: bool,
}

/// `trunk_create_file_advance` and its schedule, as the tracker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkAdvance {
    pub enabled: bool,
    /// Minutes after midnight.
    pub time_base: i64,
    /// Seconds.
    pub interval: i64,
    /// Free trunk bytes to have after a round.
    pub threshold: u64,
}

/// `trunk_compress_binlog_*` and `trunk_binlog_max_backups`, as the tracker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkCompress {
    /// Seconds; 0: never when taking the role.
    pub min_interval: i64,
    /// Seconds; 0: never on a schedule.
    pub interval: i64,
    /// Minutes after midnight the schedule starts from.
    pub time_base: i64,
    pub max_backups: usize,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            reserved: ReservedSpace::DEFAULT,
            store_path_most_free: false,
            use_storage_id: false,
            id_in_filename: false,
            response_ip_size: 16,
            use_trunk_file: false,
            trunk: Default::default(),
            trunk_compress: TrunkCompress { time_base: 3 * 60, ..Default::default() },
            trunk_advance: TrunkAdvance { time_base: 2 * 60, interval: 86_400, ..Default::default() },
            ip_changed_auto_adjust: true,
            store_slave_file_use_link: false,
            delete_unused_trunk_files: false,
        }
    }
}

/// Who this storage is: what the trackers told it and what it tells them.
#[derive(Debug)]
struct Identity {
    params: RwLock<TrackerParams>,
    /// This storage's address as the trackers see it: what new file names embed.
    my_ip: RwLock<String>,
    /// The numeric storage ID (names embed it with `id_type_in_filename = id`): `server_id`
    /// from storage.conf, or learnt from the tracker's table (GET_SERVER_ID).
    server_id: RwLock<Option<u32>>,
    /// `.data_init_flag`.
    init: Mutex<InitFlag>,
    /// The FastDFS generation each tracker (by address) answered a JOIN in.
    tracker_layouts: Mutex<HashMap<String, Layout>>,
    /// The tracker leader (`ip:port`) as the trackers last announced it (flag 0x01 briefs).
    tracker_leader: Mutex<Option<String>>,
    /// The address this storage had before this start (`last_ip_addr`), and the trackers told
    /// that it changed (78).
    previous_ip: String,
    told_ip_change: Mutex<std::collections::HashSet<String>>,
    /// The tracker's storage_ids.conf (69 FETCH_STORAGE_IDS), when it uses storage IDs: how
    /// the IDs in file names map to addresses.
    storage_ids: RwLock<Option<Arc<crate::config::StorageIds>>>,
}

/// Where this storage stands in its group.
#[derive(Debug)]
struct Membership {
    /// The status the trackers hold for us.
    status: AtomicU8,
    /// The other members of the group, as the leader last told us; the sync tasks wait on
    /// changes instead of polling.
    peers: tokio::sync::watch::Sender<Vec<Brief>>,
    /// Peer storage ID → newest source timestamp applied from it (reported in SYNC_REPORT).
    synced_from: Mutex<HashMap<String, i32>>,
    /// Peer storage ID → how far our binlog was sent to it and the time of the last record
    /// sent (the metrics' replication lag).
    sent_to: Mutex<HashMap<String, metrics::SentTo>>,
}

/// What every connection and task of a storage shares. Settings and the store are public
/// (read-only or internally synchronised); the state that changes is private behind methods.
#[derive(Debug)]
pub struct StorageServer {
    pub config: StorageConfig,
    pub group: String,
    pub paths: StorePaths,
    pub binlog: Arc<Binlog>,
    /// Where every filesystem call of a request runs.
    pub disk: disk::Disk,
    /// Counters: changed by [`Stats::record`] for requests, by the tasks that own the others.
    pub stats: Stats,
    /// What `metrics_listen` serves.
    pub metrics: crate::metrics::Metrics,
    pub up_time: i64,
    data_dir: PathBuf,
    identity: Identity,
    membership: Membership,
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
        binlog.keep_index(live.clone());
        let binlog_changed = Arc::new(tokio::sync::Notify::new());
        let temp_dirs = (0..paths.paths.len()).map(|i| paths.temp_dir(i)).collect();
        let trunk = trunk::Trunk::open(&data_dir.join("trunk"), &config)?;
        let disk = disk::Disk::open(&config, temp_dirs, binlog.clone(), trunk.log.clone(), binlog_changed.clone())?;
        let now = now_unix();
        let mut init = InitFlag::load(&data_dir).unwrap_or(InitFlag { storage_join_time: now, ..Default::default() });
        let my_ip = if config.bind_addr.is_empty() { init.last_ip_addr.clone() } else { config.bind_addr.clone() };
        // Every store path carries its mark, and .data_init_flag a copy (as C writes them).
        for (i, p) in paths.paths.iter().enumerate() {
            let key = format!("store_path_mark{i}");
            let mark = match (disk_recovery::disk_mark(&p.root), init.other(&key).map(str::to_owned)) {
                (Some(on_disk), _) => on_disk,
                (None, known) => {
                    let mark = known.unwrap_or_else(|| disk_recovery::new_mark(&my_ip, config.port, i, now));
                    disk_recovery::write_disk_mark(&p.root, &mark)?;
                    mark
                }
            };
            init.set_other(&key, mark);
        }
        init.save(&data_dir)?;
        let previous_ip = init.last_ip_addr.clone();
        let dedup = open_dedup(&config, &data_dir, &paths, &binlog)?;
        Ok(Self {
            group: config.group_name.clone(),
            paths,
            binlog,
            disk,
            stats,
            metrics: crate::metrics::Metrics::new(metrics::GAUGES),
            up_time: now,
            data_dir,
            identity: Identity {
                params: RwLock::new(TrackerParams::default()),
                my_ip: RwLock::new(my_ip),
                server_id: RwLock::new(config.server_id.parse().ok()),
                init: Mutex::new(init),
                tracker_layouts: Mutex::new(HashMap::new()),
                tracker_leader: Mutex::new(None),
                previous_ip,
                told_ip_change: Mutex::new(std::collections::HashSet::new()),
                storage_ids: RwLock::new(None),
            },
            membership: Membership {
                status: AtomicU8::new(crate::protocol::status::NONE),
                peers: tokio::sync::watch::Sender::new(Vec::new()),
                synced_from: Mutex::new(HashMap::new()),
                sent_to: Mutex::new(HashMap::new()),
            },
            file_locks: locks::FileLocks::default(),
            binlog_changed,
            trunk,
            recovery_done: tokio::sync::watch::Sender::new(recovering.is_empty()),
            recovering: Mutex::new(recovering),
            dedup,
            live,
            own_ips: crate::net::interface_ips().into_iter().map(|ip| ip.to_canonical()).collect(),
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
        self.recovering.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Store path `index` is recovered.
    pub fn path_recovered(&self, index: usize) -> std::io::Result<()> {
        let mut r = self.recovering.lock().unwrap_or_else(|e| e.into_inner());
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

    pub fn params(&self) -> TrackerParams {
        *self.identity.params.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies what a tracker's PARAMETER_REQ answer says.
    pub fn update_params(&self, f: impl FnOnce(&mut TrackerParams)) {
        f(&mut self.identity.params.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Records the address the trackers see us at.
    pub fn set_my_ip(&self, ip: String) {
        *self.identity.my_ip.write().unwrap_or_else(|e| e.into_inner()) = ip;
    }

    /// Records the storage ID the tracker's table gives us; `true` if it is news.
    pub fn set_server_id(&self, id: u32) -> bool {
        let mut cur = self.identity.server_id.write().unwrap_or_else(|e| e.into_inner());
        let news = *cur != Some(id);
        *cur = Some(id);
        news
    }

    /// Keeps the tracker's storage ID table.
    pub fn set_storage_ids(&self, ids: crate::config::StorageIds) {
        *self.identity.storage_ids.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ids));
    }

    /// The address of the storage with ID `id`: ourselves, a member the leader told us about,
    /// or the first address the tracker's ID table gives it.
    pub fn storage_id_host(&self, id: u32) -> Option<String> {
        let id_text = id.to_string();
        if self.my_id() == id_text {
            return Some(self.my_ip());
        }
        if let Some(b) = self.peer(&id_text) {
            return Some(b.ip);
        }
        let ids = self.identity.storage_ids.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        ids.by_id(id).and_then(|e| e.hosts.first().cloned())
    }

    /// `.data_init_flag` as it stands.
    pub fn init_flag(&self) -> InitFlag {
        self.identity.init.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes `.data_init_flag` and writes it.
    pub fn update_init_flag(&self, f: impl FnOnce(&mut InitFlag)) -> std::io::Result<()> {
        let mut flag = self.identity.init.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut flag);
        flag.save(&self.data_dir)
    }

    /// The status the trackers last told us.
    pub fn set_status(&self, status: u8) {
        self.membership.status.store(status, Ordering::Relaxed);
    }

    /// Remembers that a replicated change from `source` (a member of our group) at
    /// `timestamp` is applied.
    pub fn note_synced_from(&self, source: &str, timestamp: i32) {
        let mut m = self.membership.synced_from.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(source.to_owned()).or_insert(0);
        *v = (*v).max(timestamp);
    }

    /// Per source member, the newest timestamp applied from it, sorted by member.
    pub fn synced_from(&self) -> Vec<(String, i32)> {
        let m = self.membership.synced_from.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, i32)> = m.iter().map(|(k, &t)| (k.clone(), t)).collect();
        v.sort();
        v
    }

    /// Resolves at the next committed batch of binlog records.
    pub fn binlog_news(&self) -> tokio::sync::futures::Notified<'_> {
        self.binlog_changed.notified()
    }

    /// Who new file names say wrote them.
    pub fn source(&self) -> Source {
        if self.params().id_in_filename {
            if let Some(id) = *self.identity.server_id.read().unwrap_or_else(|e| e.into_inner()) {
                return Source::ServerId(id);
            }
        }
        let ip = self.my_ip().parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        Source::Ip(ip)
    }

    /// Our address as the trackers see it.
    pub fn my_ip(&self) -> String {
        self.identity.my_ip.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn status(&self) -> u8 {
        self.membership.status.load(Ordering::Relaxed)
    }

    /// How the trackers and the group's members name this storage: its storage ID when the
    /// tracker uses IDs (`server_id`, or the one it gave us), else its address. A `server_id`
    /// in storage.conf is ignored by trackers without IDs, so it is here too.
    pub fn my_id(&self) -> String {
        if self.params().use_storage_id {
            if !self.config.server_id.is_empty() {
                return self.config.server_id.clone();
            }
            if let Some(id) = *self.identity.server_id.read().unwrap_or_else(|e| e.into_inner()) {
                return id.to_string();
            }
        }
        self.my_ip()
    }

    /// The group's other members now.
    pub fn peers(&self) -> Vec<Brief> {
        self.membership.peers.borrow().clone()
    }

    /// A connection to another storage at `addr`, from `bind_addr` (with `client_bind`) so it
    /// knows us by that address, with our timeouts.
    pub async fn connect_to_peer(&self, addr: &str) -> crate::client::ClientResult<crate::client::Connection> {
        let c = &self.config;
        crate::client::Connection::connect_from(addr, c.client_bind_ip(), c.connect_timeout, c.network_timeout).await
    }

    /// The addresses a member may connect from: the one the tracker lists, and in storage-ID
    /// mode every address of its ID entry.
    fn hosts_of(&self, member: &Brief) -> Vec<String> {
        let mut hosts = vec![member.ip.clone()];
        let ids = self.identity.storage_ids.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(entry) = ids.as_ref().and_then(|ids| ids.by_id(member.id.parse().ok()?)) {
            hosts.extend(entry.hosts.iter().cloned());
        }
        hosts
    }

    /// Is `ip` one of this host's own interface addresses (a connection from this host)?
    pub fn is_own_host(&self, ip: std::net::IpAddr) -> bool {
        self.own_ips.contains(&ip.to_canonical())
    }

    /// Does a connection from `ip` come from a member of our group? Peer commands that change
    /// trunk space are accepted only from members.
    pub fn is_member_host(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical().to_string();
        self.peers().iter().any(|b| self.hosts_of(b).contains(&ip))
    }

    /// Does a connection from `ip` come from the group's trunk server (30, 33)?
    pub fn is_trunk_server_host(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical().to_string();
        self.trunk.server().is_some_and(|s| self.hosts_of(&s).contains(&ip))
    }

    /// Does a connection from `ip` come from one of our trackers (32)? Host names in
    /// `tracker_server` are looked up (rarely: only for this command).
    pub fn is_tracker_host(&self, ip: std::net::IpAddr) -> bool {
        use std::net::ToSocketAddrs;
        let ip = ip.to_canonical();
        self.config
            .tracker_servers
            .iter()
            .flat_map(|t| t.hosts.iter().map(move |h| (h.as_str(), t.port)))
            .any(|hp| hp.to_socket_addrs().is_ok_and(|mut a| a.any(|a| a.ip().to_canonical() == ip)))
    }

    /// The member named `id`, if the group has it.
    pub fn peer(&self, id: &str) -> Option<Brief> {
        self.membership.peers.borrow().iter().find(|b| b.id == id).cloned()
    }

    /// Replaces the member list (from the leader's notification); wakes those waiting on it
    /// only when it changed.
    pub fn set_peers(&self, peers: Vec<Brief>) {
        self.membership.peers.send_if_modified(|cur| {
            let changed = *cur != peers;
            *cur = peers;
            changed
        });
    }

    /// Resolves when the member list changes.
    pub fn watch_peers(&self) -> tokio::sync::watch::Receiver<Vec<Brief>> {
        self.membership.peers.subscribe()
    }

    /// Our address before this start, if it differs from `now` and `tracker` has not been told
    /// yet (78 REPORT_IP_CHANGED is sent to every tracker once).
    pub fn ip_change_to_tell(&self, tracker: &str, now: &str) -> Option<String> {
        let old = &self.identity.previous_ip;
        let told = self.identity.told_ip_change.lock().unwrap_or_else(|e| e.into_inner()).contains(tracker);
        (!old.is_empty() && old != now && !told).then(|| old.clone())
    }

    pub fn ip_change_told(&self, tracker: &str) {
        self.identity.told_ip_change.lock().unwrap_or_else(|e| e.into_inner()).insert(tracker.to_owned());
    }

    /// The generation `tracker` (`host:port`) last accepted our JOIN in.
    pub fn tracker_layout(&self, tracker: &str) -> Option<Layout> {
        self.identity.tracker_layouts.lock().unwrap_or_else(|e| e.into_inner()).get(tracker).copied()
    }

    pub fn set_tracker_layout(&self, tracker: &str, layout: Layout) {
        self.identity.tracker_layouts.lock().unwrap_or_else(|e| e.into_inner()).insert(tracker.to_owned(), layout);
    }

    /// The tracker leader as last announced (`ip:port`).
    pub fn tracker_leader(&self) -> Option<String> {
        self.identity.tracker_leader.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_tracker_leader(&self, leader: Option<String>) {
        *self.identity.tracker_leader.lock().unwrap_or_else(|e| e.into_inner()) = leader;
    }

    /// How to speak to `tracker` on a short connection: its known generation, else the
    /// configured one, else 6.16.
    pub fn tracker_profile(&self, tracker: &str) -> Profile {
        let layout = self.tracker_layout(tracker).or(self.config.tracker_protocol_version).unwrap_or(Layout::V616);
        Profile::of(layout, false)
    }

    /// What QUERY_FILE_INFO answers look like: the IP width the trackers' clients expect.
    pub fn answer_profile(&self) -> Profile {
        Profile::of(Layout::V616, self.params().response_ip_size == 46)
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
