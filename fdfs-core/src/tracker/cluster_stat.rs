//! The 6.16 cluster overviews (PROTOCOL.md §3.5): 96 trackers, 97 storages, 98 volumes
//! (groups), each with C's filters. What `fdfs_tracker_stat`, `fdfs_storage_stat` and
//! `fdfs_volumn_stat` print.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{status, Tracker};
use crate::locked::MutexExt;
use crate::protocol::leader::PingLeaderReq;
use crate::protocol::tracker::*;
use crate::protocol::Status;

use crate::protocol::tracker::stat_filter::*;

/// A follower counts as active while its pings arrive (it pings every second or so).
const PING_FRESH_SECS: i64 = 10;

/// What the leader knows of a follower: its last ping (with the connection counts of
/// 6.15.5+) and what it said of itself when it joined (58: version, up time).
#[derive(Debug, Clone, Default)]
struct Follower {
    last_ping: i64,
    counts: Option<PingLeaderReq>,
    version: String,
    up_time: i64,
}

/// The followers of this leader: one that joined (58) under its `ip:port` in the tracker list,
/// a classic one (pings only) under its IP.
#[derive(Debug, Default)]
pub struct FollowerPings {
    by_name: Mutex<HashMap<String, Follower>>,
}

impl FollowerPings {
    /// Runs `f` on `who`'s entry. Bounded by the tracker list: only trackers a storage named
    /// are listed anyway, but a stranger must not grow the map without end.
    fn update(&self, who: String, f: impl FnOnce(&mut Follower)) {
        let mut m = self.by_name.locked();
        if m.len() < crate::protocol::MAX_TRACKERS * 4 || m.contains_key(&who) {
            f(m.entry(who).or_default());
        }
    }

    pub fn record(&self, who: String, now: i64, counts: Option<PingLeaderReq>) {
        self.update(who, |f| (f.last_ping, f.counts) = (now, counts));
    }

    /// 58 JOIN_LEADER: the follower's version and start time, for 96.
    pub fn joined(&self, who: String, now: i64, version: String, up_time: i64) {
        self.update(who, |f| (f.last_ping, f.version, f.up_time) = (now, version, up_time));
    }

    fn get(&self, who: &str) -> Option<Follower> {
        self.by_name.locked().get(who).cloned()
    }
}

/// 96: every tracker of the cluster as the leader sees it. Followers answer EOPNOTSUPP.
pub fn trackers(t: &Tracker, req: &TrackerClusterStatReq, now: i64) -> Result<TrackerClusterStats, Status> {
    let me = t.self_addr();
    let known = t.lock().trackers.clone();
    let alone = known.len() <= 1;
    if !alone && !t.is_leader() {
        return Err(Status::EOPNOTSUPP);
    }
    let (current, max) = t.conns.get();
    // Ourselves under the name storages know us by, when they know one.
    let me = known.iter().find(|a| super::election::is_me(t, a)).cloned().unwrap_or(me);
    let mut out = vec![TrackerClusterStat {
        host: me.clone(),
        is_leader: 1,
        is_active: 1,
        conn_alloc: t.config.max_connections.min(i32::MAX as usize) as i32,
        conn_current: current,
        conn_max: max,
        version: t.profile.version_text().into(),
        up_time: t.up_time,
        last_heart_beat_time: 0,
    }];
    for addr in known.iter().filter(|a| !super::election::is_me(t, a)) {
        let ip = crate::config::ServerAddr::parse(addr).map(|a| a.hosts[0].clone()).unwrap_or_default();
        // Joined followers are known by their address in the list, classic ones by their IP.
        let f = t.follower_pings.get(addr).or_else(|| t.follower_pings.get(&ip)).unwrap_or_default();
        let counts = f.counts.unwrap_or_default();
        out.push(TrackerClusterStat {
            host: addr.clone(),
            is_leader: 0,
            is_active: (now - f.last_ping <= PING_FRESH_SECS) as u8,
            conn_alloc: counts.conn_alloc,
            conn_current: counts.conn_current,
            conn_max: counts.conn_max,
            version: f.version,
            up_time: f.up_time,
            last_heart_beat_time: f.last_ping,
        });
    }
    out.retain(|s| {
        (req.filter_by & TRACKER_IS_ACTIVE == 0 || s.is_active == req.is_active)
            && (req.filter_by & TRACKER_IS_LEADER == 0 || s.is_leader == req.is_leader)
    });
    Ok(TrackerClusterStats { trackers: out })
}

/// 97: every storage of every group.
pub fn storages(t: &Tracker, req: &StorageClusterStatReq) -> StorageClusterStats {
    // Without trunk files C 6.16.1 ignores the trunk-server filter (`-T`/`-t` list everyone).
    let by_trunk = t.config.use_trunk_file && req.filter_by & STORAGE_IS_TRUNK_SERVER != 0;
    let c = t.lock();
    let storages = c
        .groups
        .values()
        .flat_map(|g| g.storages.values().map(move |s| (s, g.trunk_server == s.id)))
        .filter(|(s, trunk)| {
            let by_status = match req.op_type {
                b'!' => s.status != req.status,
                _ => s.status == req.status,
            };
            (req.filter_by & STORAGE_STATUS == 0 || by_status) && (!by_trunk || req.is_trunk_server == *trunk as u8)
        })
        .map(|(s, trunk)| StorageClusterStat {
            id: s.id.clone(),
            host: crate::config::join_host_port(&s.ip, s.storage_port),
            is_trunk_server: trunk as u8,
            status: s.status,
            conn_alloc: s.stat.conn_alloc,
            conn_current: s.stat.conn_current,
            conn_max: s.stat.conn_max,
            version: s.version.clone(),
            up_time: s.up_time,
            last_heart_beat_time: s.last_heart_beat_time,
        })
        .collect();
    StorageClusterStats { use_storage_id: t.ids.ids.is_some(), use_trunk_file: t.config.use_trunk_file, storages }
}

/// 98: every group's space. Available space is free space above the reserve; a group whose
/// storages are all gone has none.
pub fn volumes(t: &Tracker, req: &VolumeStatReq) -> VolumeStats {
    // As for storages: the trunk filter means nothing without trunk files.
    let by_trunk = t.config.use_trunk_file && req.filter_by & VOLUME_TRUNK_AVAILABLE != 0;
    let c = t.lock();
    let groups = c
        .groups
        .values()
        .map(|g| {
            let (total_mb, free_mb) = g.space();
            let reserved_mb = t.config.reserved_storage_space.reserved_mb(total_mb);
            let avail_mb = (free_mb - reserved_mb).max(0);
            let writable = g.storages.values().any(|s| s.status == status::ACTIVE);
            VolumeStat {
                group: g.name.clone(),
                total_mb,
                free_mb,
                reserved_mb,
                avail_mb,
                trunk_free_mb: g.trunk_free_mb,
                is_disk_available: (writable && avail_mb > 0) as u8,
                is_trunk_available: (t.config.use_trunk_file
                    && g.trunk_brief().is_some_and(|b| b.status == status::ACTIVE))
                    as u8,
            }
        })
        .filter(|v| {
            let space = v.is_disk_available | v.is_trunk_available;
            (req.filter_by & VOLUME_DISK_AVAILABLE == 0 || v.is_disk_available == req.disk_available)
                && (!by_trunk || v.is_trunk_available == req.trunk_available)
                && (req.filter_by & VOLUME_SPACE_AVAILABLE == 0 || space == req.space_available)
        })
        .collect();
    VolumeStats { use_trunk_file: t.config.use_trunk_file, groups }
}
