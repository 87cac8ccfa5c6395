//! Who this storage is (its address, ID, the trackers' parameters and generations, the init
//! flag) and where it stands in its group (status, members, what was synced from whom).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::metrics;
use super::stats::InitFlag;
use super::{StorageServer, TrackerParams};
use crate::file_id::Source;
use crate::locked::{MutexExt, RwLockExt};
use crate::protocol::report::Brief;
use crate::protocol::{Layout, Profile, StorageStatus};

/// Who this storage is: what the trackers told it and what it tells them.
#[derive(Debug)]
pub struct Identity {
    params: RwLock<TrackerParams>,
    /// This storage's address as the trackers see it: what new file names embed.
    my_ip: RwLock<String>,
    /// `server_id` from storage.conf (empty when not set).
    configured_id: String,
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
pub struct Membership {
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

impl StorageServer {
    /// The address of the storage with ID `id`: ourselves, a member the leader told us about,
    /// or the first address the tracker's ID table gives it.
    pub fn storage_id_host(&self, id: u32) -> Option<String> {
        let id_text = id.to_string();
        if self.identity.my_id() == id_text {
            return Some(self.identity.my_ip());
        }
        if let Some(b) = self.membership.peer(&id_text) {
            return Some(b.ip);
        }
        let ids = self.identity.storage_ids.read_locked().clone()?;
        ids.by_id(id).and_then(|e| e.hosts.first().cloned())
    }

    /// Changes `.data_init_flag` and writes it.
    pub fn update_init_flag(&self, f: impl FnOnce(&mut InitFlag)) -> std::io::Result<()> {
        let mut flag = self.identity.init.locked();
        f(&mut flag);
        flag.save(&self.data_dir)
    }

    /// Resolves at the next committed batch of binlog records.
    pub fn binlog_news(&self) -> tokio::sync::futures::Notified<'_> {
        self.binlog_changed.notified()
    }

    /// A connection to another storage at `addr`, from `bind_addr` (with `client_bind`) so it
    /// knows us by that address, with our timeouts.
    pub async fn connect_to_peer(&self, addr: &str) -> crate::client::ClientResult<crate::client::Connection> {
        let c = &self.config;
        crate::client::Connection::connect_from(addr, c.client_bind_ip(), c.connect_timeout, c.network_timeout).await
    }

    /// Is `ip` one of this host's own interface addresses (a connection from this host)?
    pub fn is_own_host(&self, ip: std::net::IpAddr) -> bool {
        self.own_ips.contains(&ip.to_canonical())
    }

    /// Does a connection from `ip` come from a member of our group? Peer commands that change
    /// trunk space are accepted only from members.
    pub fn is_member_host(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical().to_string();
        self.membership.peers().iter().any(|b| self.identity.hosts_of(b).contains(&ip))
    }

    /// Does a connection from `ip` come from the group's trunk server (30, 33)?
    pub fn is_trunk_server_host(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical().to_string();
        self.trunk.server().is_some_and(|s| self.identity.hosts_of(&s).contains(&ip))
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

    /// How to speak to `tracker` on a short connection: its known generation, else the
    /// configured one, else 6.16.
    pub fn tracker_profile(&self, tracker: &str) -> Profile {
        let layout =
            self.identity.tracker_layout(tracker).or(self.config.tracker_protocol_version).unwrap_or(Layout::V616);
        Profile::of(layout, false)
    }
}

impl Identity {
    /// Before any tracker answered: C's default parameters, no trackers known.
    pub(super) fn new(my_ip: String, configured_id: String, init: InitFlag, previous_ip: String) -> Self {
        Self {
            params: RwLock::new(TrackerParams::default()),
            my_ip: RwLock::new(my_ip),
            server_id: RwLock::new(configured_id.parse().ok()),
            configured_id,
            init: Mutex::new(init),
            tracker_layouts: Mutex::new(HashMap::new()),
            tracker_leader: Mutex::new(None),
            previous_ip,
            told_ip_change: Mutex::new(std::collections::HashSet::new()),
            storage_ids: RwLock::new(None),
        }
    }

    pub fn params(&self) -> TrackerParams {
        *self.params.read_locked()
    }

    /// Applies what a tracker's PARAMETER_REQ answer says.
    pub fn update_params(&self, f: impl FnOnce(&mut TrackerParams)) {
        f(&mut self.params.write_locked());
    }

    /// Records the address the trackers see us at.
    pub fn set_my_ip(&self, ip: String) {
        *self.my_ip.write_locked() = ip;
    }

    /// Records the storage ID the tracker's table gives us; `true` if it is news.
    pub fn set_server_id(&self, id: u32) -> bool {
        let mut cur = self.server_id.write_locked();
        let news = *cur != Some(id);
        *cur = Some(id);
        news
    }

    /// Keeps the tracker's storage ID table.
    pub fn set_storage_ids(&self, ids: crate::config::StorageIds) {
        *self.storage_ids.write_locked() = Some(Arc::new(ids));
    }

    /// `.data_init_flag` as it stands.
    pub fn init_flag(&self) -> InitFlag {
        self.init.locked().clone()
    }

    /// Who new file names say wrote them.
    pub fn source(&self) -> Source {
        if self.params().id_in_filename {
            if let Some(id) = *self.server_id.read_locked() {
                return Source::ServerId(id);
            }
        }
        let ip = self.my_ip().parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        Source::Ip(ip)
    }

    /// Our address as the trackers see it.
    pub fn my_ip(&self) -> String {
        self.my_ip.read_locked().clone()
    }

    /// How the trackers and the group's members name this storage: its storage ID when the
    /// tracker uses IDs (`server_id`, or the one it gave us), else its address. A `server_id`
    /// in storage.conf is ignored by trackers without IDs, so it is here too.
    pub fn my_id(&self) -> String {
        if self.params().use_storage_id {
            if !self.configured_id.is_empty() {
                return self.configured_id.clone();
            }
            if let Some(id) = *self.server_id.read_locked() {
                return id.to_string();
            }
        }
        self.my_ip()
    }

    /// The addresses a member may connect from: the one the tracker lists, and in storage-ID
    /// mode every address of its ID entry.
    fn hosts_of(&self, member: &Brief) -> Vec<String> {
        let mut hosts = vec![member.ip.clone()];
        let ids = self.storage_ids.read_locked().clone();
        if let Some(entry) = ids.as_ref().and_then(|ids| ids.by_id(member.id.parse().ok()?)) {
            hosts.extend(entry.hosts.iter().cloned());
        }
        hosts
    }

    /// Our address before this start, if it differs from `now` and `tracker` has not been told
    /// yet (78 REPORT_IP_CHANGED is sent to every tracker once).
    pub fn ip_change_to_tell(&self, tracker: &str, now: &str) -> Option<String> {
        let old = &self.previous_ip;
        let told = self.told_ip_change.locked().contains(tracker);
        (!old.is_empty() && old != now && !told).then(|| old.clone())
    }

    pub fn ip_change_told(&self, tracker: &str) {
        self.told_ip_change.locked().insert(tracker.to_owned());
    }

    /// The generation `tracker` (`host:port`) last accepted our JOIN in.
    pub fn tracker_layout(&self, tracker: &str) -> Option<Layout> {
        self.tracker_layouts.locked().get(tracker).copied()
    }

    pub fn set_tracker_layout(&self, tracker: &str, layout: Layout) {
        self.tracker_layouts.locked().insert(tracker.to_owned(), layout);
    }

    /// The tracker leader as last announced (`ip:port`).
    pub fn tracker_leader(&self) -> Option<String> {
        self.tracker_leader.locked().clone()
    }

    pub fn set_tracker_leader(&self, leader: Option<String>) {
        *self.tracker_leader.locked() = leader;
    }

    /// What QUERY_FILE_INFO answers look like: the IP width the trackers' clients expect.
    pub fn answer_profile(&self) -> Profile {
        Profile::of(Layout::V616, self.params().response_ip_size == 46)
    }
}

impl Membership {
    /// The replication sender to `peer` got to `(index, offset)` of the binlog, the last record
    /// it sent dated `record_time` (0: caught up, nothing pending).
    pub fn note_sent(&self, peer: &str, (index, offset): (u32, u64), record_time: i64) {
        let mut m = self.sent_to.locked();
        let now = metrics::SentTo { index, offset, last_record: record_time };
        match m.get_mut(peer) {
            Some(s) => *s = now,
            None => {
                m.insert(peer.to_owned(), now);
            }
        }
    }

    /// How far the binlog was sent to each member (the metrics' replication lag).
    pub fn sent_to(&self) -> HashMap<String, metrics::SentTo> {
        self.sent_to.locked().clone()
    }

    /// The status the trackers last told us.
    pub fn set_status(&self, status: StorageStatus) {
        self.status.store(status.byte(), Ordering::Relaxed);
    }

    pub fn status(&self) -> StorageStatus {
        StorageStatus::from_byte(self.status.load(Ordering::Relaxed))
    }

    /// Remembers that a replicated change from `source` (a member of our group) at
    /// `timestamp` is applied.
    pub fn note_synced_from(&self, source: &str, timestamp: i32) {
        let mut m = self.synced_from.locked();
        let v = m.entry(source.to_owned()).or_insert(0);
        *v = (*v).max(timestamp);
    }

    /// Per source member, the newest timestamp applied from it, sorted by member.
    pub fn synced_from(&self) -> Vec<(String, i32)> {
        let m = self.synced_from.locked();
        let mut v: Vec<(String, i32)> = m.iter().map(|(k, &t)| (k.clone(), t)).collect();
        v.sort();
        v
    }

    /// The group's other members now.
    pub fn peers(&self) -> Vec<Brief> {
        self.peers.borrow().clone()
    }

    /// The member named `id`, if the group has it.
    pub fn peer(&self, id: &str) -> Option<Brief> {
        self.peers.borrow().iter().find(|b| b.id == id).cloned()
    }

    /// Replaces the member list (from the leader's notification); wakes those waiting on it
    /// only when it changed.
    pub fn set_peers(&self, peers: Vec<Brief>) {
        self.peers.send_if_modified(|cur| {
            let changed = *cur != peers;
            *cur = peers;
            changed
        });
    }

    /// Resolves when the member list changes.
    pub fn watch_peers(&self) -> tokio::sync::watch::Receiver<Vec<Brief>> {
        self.peers.subscribe()
    }
}

/// Not told anything yet: status NONE, no members.
impl Default for Membership {
    fn default() -> Self {
        Self {
            status: AtomicU8::new(crate::protocol::status::NONE.byte()),
            peers: tokio::sync::watch::Sender::new(Vec::new()),
            synced_from: Mutex::new(HashMap::new()),
            sent_to: Mutex::new(HashMap::new()),
        }
    }
}
