//! `fdfs_trackerd`: the tracker daemon (PROTOCOL.md §3, §7).
//!
//! [`run`] takes a bound listener, the config and a shutdown signal, so tests bind
//! `127.0.0.1:0`. All state sits in one [`Tracker`] behind a mutex: tracker traffic is small
//! (queries and beats), and one lock keeps every status transition atomic.

pub mod bootstrap;
pub mod cluster_stat;
pub mod election;
pub mod metrics;
mod persist;
pub mod select;
mod service;
pub mod state;
pub mod trunk;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{ResponseIpSize, StorageIds, TrackerConfig};
use crate::locked::{MutexExt, RwLockExt};
use crate::protocol::{Layout, Profile};
use crate::server::{serve, ConnectionLimits, ConnectionThreads, Shutdown};
use crate::timefmt::now_unix;

pub use persist::{load as load_state, save as save_state};
pub use state::{status, Cluster};

/// Everything the connections share.
#[derive(Debug)]
pub struct Tracker {
    pub config: TrackerConfig,
    pub policy: select::Policy,
    pub ids: state::IdPolicy,
    pub limits: state::Limits,
    pub cluster: Mutex<Cluster>,
    /// What answers to clients look like (`client_protocol_version`, `response_ip_addr_size`).
    /// Storages are answered in the generation their JOIN showed.
    pub profile: Profile,
    pub up_time: i64,
    /// The previous run's last status write, for `restart_interval` in elections.
    pub last_check_time: i64,
    /// The leader tracker (`ip:port`), when known.
    pub leader: RwLock<Option<String>>,
    /// The candidate announced by NOTIFY_NEXT_LEADER.
    pub candidate: RwLock<Option<String>>,
    /// Bumped when the leader changes, so report connections re-announce it.
    pub leader_epoch: AtomicU64,
    /// The bound port and this host's addresses: how we recognise ourselves in tracker lists.
    pub port: AtomicU16,
    own_ips: Vec<String>,
    /// Addresses storages reach us by that are on no interface here (NAT, a VIP, an alias added
    /// since the start): C's `insert_into_local_host_ip` of a JOIN's `current_tracker_ip`.
    aliases: std::sync::Mutex<Vec<String>>,
    /// Client and storage connections open now, and the most at once.
    pub conns: Arc<crate::server::ConnCounts>,
    /// As leader: when each follower last pinged.
    pub follower_pings: cluster_stat::FollowerPings,
    /// What `metrics_listen` serves.
    pub metrics: crate::metrics::Metrics,
    /// The state copy from another tracker at the first JOIN ([`bootstrap`]).
    pub bootstrap: std::sync::atomic::AtomicU8,
    bootstrap_lock: tokio::sync::Mutex<()>,
    data_dir: PathBuf,
}

/// Why a tracker cannot open its state and start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The storage ID table or a state file that cannot be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Result<Self, OpenError> {
        let data_dir = config.base_path.join("data");
        std::fs::create_dir_all(&data_dir)?;
        crate::durable::remove_stale_temps(&data_dir);
        let ids = if config.use_storage_id { Some(StorageIds::load(&config.storage_ids_filename)?) } else { None };
        let limits =
            state::Limits { max_groups: config.max_groups, max_storages_per_group: config.max_storages_per_group };
        let cluster = persist::load(&data_dir, &limits)?;
        let profile = client_profile(&config, ids.as_ref());
        let last_check_time = std::fs::read_to_string(data_dir.join(persist::STATUS_FILE))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("last_check_time=").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0);
        Ok(Self {
            policy: select::Policy::from_config(&config),
            ids: state::IdPolicy { ids, trust_storage_server_id: config.trust_storage_server_id },
            limits,
            cluster: Mutex::new(cluster),
            profile,
            up_time: now_unix(),
            last_check_time,
            leader: RwLock::new(None),
            candidate: RwLock::new(None),
            leader_epoch: AtomicU64::new(0),
            port: AtomicU16::new(config.port),
            own_ips: crate::net::interface_ips().iter().map(|ip| ip.to_string()).collect(),
            aliases: std::sync::Mutex::new(Vec::new()),
            conns: Default::default(),
            follower_pings: Default::default(),
            metrics: crate::metrics::Metrics::new(metrics::GAUGES),
            bootstrap: std::sync::atomic::AtomicU8::new(bootstrap::NOT_TRIED),
            bootstrap_lock: tokio::sync::Mutex::new(()),
            data_dir,
            config,
        })
    }

    pub fn self_addr(&self) -> String {
        let ip = if self.config.bind_addr.is_empty() {
            self.own_ips
                .iter()
                .find(|ip| !ip.starts_with("127.") && !ip.contains(':'))
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".into())
        } else {
            self.config.bind_addr.clone()
        };
        crate::config::join_host_port(&ip, self.port.load(Ordering::Relaxed))
    }

    /// Is `ip` an address of this tracker: on an interface here, or one storages reach us by?
    pub fn is_own_ip(&self, ip: &str) -> bool {
        self.own_ips.iter().any(|own| own == ip) || self.aliases.locked().iter().any(|a| a == ip)
    }

    /// A storage reached us at `ip` (the accepted socket's local address, or the JOIN's
    /// `current_tracker_ip`, which differs behind NAT): if no interface here has it, it is ours
    /// too, and we are the tracker storages list under it. At most 16 addresses, as C keeps.
    pub fn learn_own_ip(&self, ip: &str) {
        if ip.is_empty() || !crate::protocol::is_safe_token(ip) || ip.parse::<std::net::IpAddr>().is_err() {
            return;
        }
        if self.is_own_ip(ip) {
            return;
        }
        let mut aliases = self.aliases.locked();
        if aliases.len() + self.own_ips.len() < 16 {
            tracing::info!("storages reach this tracker at {ip}, an address of no interface here: it is ours too");
            aliases.push(ip.to_owned());
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.read_locked().as_deref() == Some(self.self_addr().as_str())
    }

    pub fn set_leader(&self, leader: Option<String>) {
        let mut l = self.leader.write_locked();
        if *l != leader {
            *l = leader;
            self.leader_epoch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What TRACKER_GET_STATUS answers.
    pub fn status(&self) -> crate::protocol::leader::TrackerStatus {
        let now = now_unix();
        let running = (now - self.up_time) / 300 * 300;
        let restart =
            if self.last_check_time > 0 { (self.up_time - self.last_check_time).max(0) / 300 * 300 } else { 0 };
        crate::protocol::leader::TrackerStatus {
            is_leader: self.is_leader() as u8,
            running_time: running,
            restart_interval: restart,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        // A panic while holding the lock leaves consistent-enough data (every transition is a
        // few field writes); keep serving rather than poisoning the daemon.
        self.cluster.locked()
    }

    /// Writes the state files if anything changed.
    pub fn save_if_dirty(&self, force: bool) {
        let snapshot = {
            let mut c = self.lock();
            if !c.dirty && !force {
                return;
            }
            c.dirty = false;
            c.clone()
        };
        let layout = if self.profile.layout.has_http_fields() { Layout::Classic } else { Layout::V616 };
        if let Err(e) =
            persist::save(&self.data_dir, &snapshot, self.ids.ids.is_some(), layout, self.up_time, now_unix())
        {
            tracing::error!("writing state files in {}: {e}", self.data_dir.display());
            self.lock().dirty = true;
        }
    }
}

/// The client-facing profile. Before 6.15 the IP width is fixed by the generation; from 6.15
/// on `response_ip_addr_size` chooses it (`auto`: IPv6 width only when an ID entry is IPv6).
fn client_profile(config: &TrackerConfig, ids: Option<&StorageIds>) -> Profile {
    let ipv6 = match config.response_ip_addr_size {
        ResponseIpSize::Auto => {
            ids.is_some_and(|ids| ids.entries.iter().any(|e| e.hosts.iter().any(|h| h.contains(':'))))
        }
        ResponseIpSize::V4 => {
            tracing::warn!(
                "response_ip_addr_size = IPv4: answering with 16-byte IPs (C 6.15/6.16 would use 46 for any value but auto)"
            );
            false
        }
        ResponseIpSize::V6 => true,
    };
    let p = Profile::of(config.client_protocol_version, ipv6);
    tracing::info!(
        "answering clients as FastDFS {} with {}-byte IP fields",
        config.client_protocol_version,
        p.response_ip_size
    );
    p
}

/// Serves until `shutdown` (connections on `threads`), then writes the state files.
pub async fn run(listener: TcpListener, threads: ConnectionThreads, tracker: Arc<Tracker>, shutdown: Shutdown) {
    let own = threads.first().clone();
    let allow = tracker.config.allow_hosts.clone();
    if let Ok(a) = listener.local_addr() {
        tracker.port.store(a.port(), Ordering::Relaxed);
    }
    let bg = own.spawn(background(tracker.clone(), shutdown.clone()));
    let el = own.spawn(election::run(tracker.clone(), shutdown.clone()));
    let tr = own.spawn(trunk::run(tracker.clone(), shutdown.clone()));
    let mx = tracker
        .config
        .metrics_listen
        .map(|addr| own.spawn(crate::metrics::serve(addr, tracker.clone(), shutdown.clone())));
    let t = tracker.clone();
    let limits = ConnectionLimits {
        max_connections: tracker.config.max_connections,
        per_ip: tracker.config.max_connections_per_ip,
        counts: tracker.conns.clone(),
    };
    serve(listener, allow, limits, &threads, shutdown, move |sock, peer, sd| {
        service::handle(t.clone(), sock, peer, sd)
    })
    .await;
    let _ = bg.await;
    let _ = el.await;
    let _ = tr.await;
    if let Some(m) = mx {
        let _ = m.await;
    }
    tracker.save_if_dirty(true);
    tracing::info!("tracker stopped");
}

/// Expires silent storages and writes the state files when they changed.
async fn background(tracker: Arc<Tracker>, mut shutdown: Shutdown) {
    let check = tracker.config.check_active_interval.as_secs().max(1) as i64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_status_write = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let now = now_unix();
        tracker.lock().expire(now, check);
        let force = now - last_status_write >= 300;
        if force {
            last_status_write = now;
        }
        // The state files are fsynced: off the async workers.
        let t = tracker.clone();
        let _ = tokio::task::spawn_blocking(move || t.save_if_dirty(force)).await;
    }
}
