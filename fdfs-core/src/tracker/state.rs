//! The tracker's picture of the cluster: groups, their storages, and the status state machine
//! (PROTOCOL.md §7.1). Pure data and transitions; no I/O, so every rule is unit-testable.

use std::collections::BTreeMap;

use crate::config::RwMode;
use crate::protocol::report::{Brief, JoinReq, PathUsage, SyncTimestamp};
use crate::protocol::stat::{GroupStat, StatBuff, StorageStat};
use crate::protocol::{valid_group_name, Layout, Profile, Status};

pub use crate::protocol::status;

use crate::protocol::StorageStatus;
use status::*;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageNode {
    pub id: String,
    pub ip: String,
    pub status: StorageStatus,
    pub rw_mode: RwMode,
    pub version: String,
    pub domain_name: String,
    pub join_time: i64,
    pub up_time: i64,
    pub storage_port: u16,
    pub http_port: i64,
    pub sync_src_id: String,
    pub sync_until_timestamp: i64,
    pub store_path_count: usize,
    pub subdir_count_per_path: u32,
    pub upload_priority: i64,
    pub paths: Vec<PathUsage>,
    pub total_mb: i64,
    pub free_mb: i64,
    pub current_write_path: usize,
    pub stat: StatBuff,
    pub last_heart_beat_time: i64,
    /// Source storage ID → the last source timestamp this storage applied from it.
    pub synced_from: BTreeMap<String, i32>,
    /// How far into the tracker's changelog this storage has read.
    pub changelog_offset: u64,
    /// Open report connections (JOINed) from this storage.
    pub connections: usize,
    /// The generation its last JOIN was in (not kept across restarts).
    pub layout: Option<Layout>,
}

impl StorageNode {
    /// The server-to-server profile of this storage's generation: the shape of its last JOIN,
    /// or (before it joined since a restart) its version text.
    pub fn profile(&self) -> Profile {
        let layout = self.layout.or_else(|| Layout::from_version(&self.version)).unwrap_or(Layout::Classic);
        Profile::of(layout, false)
    }

    pub fn writable(&self) -> bool {
        self.status == ACTIVE && matches!(self.rw_mode, RwMode::Both | RwMode::Write)
    }

    pub fn readable(&self) -> bool {
        self.status == ACTIVE && matches!(self.rw_mode, RwMode::Both | RwMode::Read)
    }

    /// `last_synced_timestamp`: up to when this storage holds everything of its peers (the
    /// minimum over the sources it reported).
    pub fn last_synced_timestamp(&self) -> i64 {
        self.synced_from.values().copied().min().unwrap_or(0) as i64
    }

    pub fn brief(&self) -> Brief {
        Brief { status: self.status, port: self.storage_port as i32, id: self.id.clone(), ip: self.ip.clone() }
    }

    pub fn stat_record(&self, reserved_mb: i64) -> StorageStat {
        let mut stat = self.stat;
        stat.counters.last_heart_beat_time = self.last_heart_beat_time;
        stat.counters.last_synced_timestamp = self.last_synced_timestamp();
        StorageStat {
            status: self.status,
            rw_mode: self.rw_mode.wire(),
            id: self.id.clone(),
            ip: self.ip.clone(),
            domain_name: self.domain_name.clone(),
            sync_src_id: self.sync_src_id.clone(),
            version: self.version.clone(),
            join_time: self.join_time,
            up_time: self.up_time,
            total_mb: self.total_mb,
            free_mb: self.free_mb,
            reserved_mb,
            upload_priority: self.upload_priority,
            store_path_count: self.store_path_count as i64,
            subdir_count_per_path: self.subdir_count_per_path as i64,
            current_write_path: self.current_write_path as i64,
            storage_port: self.storage_port as i64,
            storage_http_port: self.http_port,
            stat,
            if_trunk_server: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub name: String,
    pub storage_port: u16,
    pub http_port: i64,
    pub store_path_count: usize,
    pub subdir_count_per_path: u32,
    pub current_trunk_file_id: i64,
    /// The storage (ID) that allocates trunk space for the group; empty: none yet.
    pub trunk_server: String,
    /// The one before it (C keeps it in the groups file too).
    pub last_trunk_server: String,
    /// Bumped whenever `trunk_server` changes: report connections tell their storage again.
    pub trunk_epoch: u64,
    /// Free trunk space the trunk server reported (74), in MB.
    pub trunk_free_mb: i64,
    /// Sorted by ID: "first by ID" orderings are string orderings, as in FastDFS.
    pub storages: BTreeMap<String, StorageNode>,
    /// Bumped on every membership or status change; report connections compare it with what
    /// they last sent to decide whether to push the brief list.
    pub change_counter: u64,
    pub write_cursor: usize,
    pub read_cursor: usize,
}

impl Group {
    pub fn writable(&self) -> impl Iterator<Item = &StorageNode> {
        self.storages.values().filter(|s| s.writable())
    }

    pub fn readable(&self) -> impl Iterator<Item = &StorageNode> {
        self.storages.values().filter(|s| s.readable())
    }

    /// The ACTIVE storage with the least free space decides the group's space.
    pub fn space(&self) -> (i64, i64) {
        self.storages
            .values()
            .filter(|s| s.status == ACTIVE)
            .map(|s| (s.free_mb, s.total_mb))
            .min()
            .map(|(free, total)| (total, free))
            .unwrap_or((0, 0))
    }

    pub fn stat(&self, reserved_mb: i64) -> GroupStat {
        let (total_mb, free_mb) = self.space();
        let active = self.storages.values().filter(|s| s.status == ACTIVE).count() as i64;
        GroupStat {
            group: self.name.clone(),
            total_mb,
            free_mb,
            reserved_mb,
            trunk_free_mb: self.trunk_free_mb,
            storage_count: self.storages.len() as i64,
            storage_port: self.storage_port as i64,
            storage_http_port: self.http_port,
            active_count: active,
            readable_count: self.readable().count() as i64,
            writable_count: self.writable().count() as i64,
            current_write_server: self.write_cursor as i64,
            store_path_count: self.store_path_count as i64,
            subdir_count_per_path: self.subdir_count_per_path as i64,
            current_trunk_file_id: self.current_trunk_file_id,
        }
    }

    pub fn briefs(&self) -> Vec<Brief> {
        self.storages.values().map(StorageNode::brief).collect()
    }

    /// The trunk server's brief, if the group has one.
    pub fn trunk_brief(&self) -> Option<Brief> {
        self.storages.get(&self.trunk_server).map(StorageNode::brief)
    }

    /// Makes `id` the trunk server. `last_trunk_server` follows it, as in C's groups file: it
    /// is the one an election prefers.
    pub fn set_trunk_server(&mut self, id: &str) {
        if self.trunk_server == id {
            return;
        }
        tracing::info!("group {}: trunk server {:?} -> {:?}", self.name, self.trunk_server, id);
        self.trunk_server = id.to_owned();
        self.last_trunk_server = id.to_owned();
        self.trunk_free_mb = 0;
        self.trunk_epoch += 1;
    }

    fn set_status(&mut self, id: &str, new: StorageStatus) -> bool {
        let Some(s) = self.storages.get_mut(id) else { return false };
        if s.status == new {
            return false;
        }
        tracing::info!("storage {}/{} {} -> {}", self.name, id, s.status.name(), new.name());
        s.status = new;
        self.change_counter += 1;
        true
    }
}

/// What a JOIN resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub group: String,
    pub id: String,
    pub status: StorageStatus,
    pub sync_src_id: String,
}

/// How much the cluster may hold (`max_groups`, `max_storages_per_group`): unauthenticated
/// JOINs must not grow the tracker's memory and state files without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_groups: usize,
    pub max_storages_per_group: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: crate::protocol::MAX_GROUPS,
            max_storages_per_group: crate::protocol::MAX_SERVERS_EACH_GROUP,
        }
    }
}

/// How the tracker identifies storages.
#[derive(Debug, Clone, Default)]
pub struct IdPolicy {
    /// `use_storage_id`: the table, else storages are named by IP.
    pub ids: Option<crate::config::StorageIds>,
    pub trust_storage_server_id: bool,
}

/// 10/8, 172.16/12, 192.168/16 (C's `is_private_ip`): the address classes a two-address
/// storage_ids.conf entry tells apart.
pub fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private(),
        std::net::IpAddr::V6(_) => false,
    }
}

impl IdPolicy {
    /// The address of storage `ip` that a client at `client` can reach: with a two-address
    /// entry (inner and outer), the one of the client's class, as C answers; else `ip`.
    pub fn for_client(&self, ip: &str, client: std::net::IpAddr) -> String {
        let Some(table) = &self.ids else { return ip.to_owned() };
        let Some(e) = table.entries.iter().find(|e| e.hosts.len() > 1 && e.hosts.iter().any(|h| h == ip)) else {
            return ip.to_owned();
        };
        let want = is_private(&client);
        e.hosts
            .iter()
            .find(|h| h.parse::<std::net::IpAddr>().is_ok_and(|a| is_private(&a) == want))
            .cloned()
            .unwrap_or_else(|| ip.to_owned())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub groups: BTreeMap<String, Group>,
    pub group_cursor: usize,
    /// Every tracker storages told us about (for leader election).
    pub trackers: Vec<String>,
    /// The changelog (`storage_changelog.dat`) content, append-only.
    pub changelog: Vec<u8>,
    /// Something persistent changed since the state files were last written.
    pub dirty: bool,
}

impl Cluster {
    pub fn storage(&self, group: &str, id: &str) -> Option<&StorageNode> {
        self.groups.get(group)?.storages.get(id)
    }

    pub fn storage_mut(&mut self, group: &str, id: &str) -> Option<&mut StorageNode> {
        self.groups.get_mut(group)?.storages.get_mut(id)
    }

    /// 81 STORAGE_JOIN (§3.6.2, §7.1).
    pub fn join(
        &mut self,
        req: &JoinReq,
        peer_ip: &str,
        ids: &IdPolicy,
        limits: &Limits,
        now: i64,
    ) -> Result<Joined, Status> {
        let (id, rw_mode) = identify(req, peer_ip, ids)?;
        self.check_limits(req, &id, peer_ip, limits)?;
        let changelog_len = self.changelog.len() as u64;
        let group = self.groups.entry(req.group.clone()).or_insert_with(|| Group {
            name: req.group.clone(),
            storage_port: req.storage_port as u16,
            http_port: req.storage_http_port,
            store_path_count: req.store_path_count as usize,
            subdir_count_per_path: req.subdir_count_per_path as u32,
            ..Default::default()
        });
        group.check_shape(req, &id, ids.ids.is_none())?;
        let known = group.storages.get(&id).filter(|s| s.status != DELETED).map(|s| s.status);
        let new_status = join_status(known, req)?;
        let node = group.storages.entry(id.clone()).or_default();
        if known.is_none() {
            *node = StorageNode {
                id: id.clone(),
                join_time: if req.join_time > 0 { req.join_time } else { now },
                changelog_offset: changelog_len,
                ..Default::default()
            };
        }
        node.update_from(req, peer_ip, rw_mode);
        if known.is_none() {
            node.status = new_status;
            group.change_counter += 1;
            tracing::info!("storage {}/{id} joined as {}", req.group, new_status.name());
        } else {
            group.set_status(&id, new_status);
        }
        let node = &group.storages[&id];
        let joined =
            Joined { group: req.group.clone(), id, status: node.status, sync_src_id: node.sync_src_id.clone() };
        // A cluster has at most 16 trackers; a storage cannot make the list grow beyond that.
        for t in &req.trackers {
            if !self.trackers.contains(t) && self.trackers.len() < crate::protocol::MAX_TRACKERS {
                self.trackers.push(t.clone());
            }
        }
        self.dirty = true;
        Ok(joined)
    }

    /// `max_groups` and `max_storages_per_group`: ENOSPC for a storage that would exceed them.
    fn check_limits(&self, req: &JoinReq, id: &str, peer_ip: &str, limits: &Limits) -> Result<(), Status> {
        if !self.groups.contains_key(&req.group) && self.groups.len() >= limits.max_groups {
            tracing::warn!(
                "storage {id} ({peer_ip}) refused: group {} would exceed max_groups {}",
                req.group,
                limits.max_groups
            );
            return Err(Status::ENOSPC);
        }
        if let Some(g) = self.groups.get(&req.group) {
            if !g.storages.contains_key(id) && g.storages.len() >= limits.max_storages_per_group {
                tracing::warn!(
                    "storage {id} ({peer_ip}) refused: group {} already has max_storages_per_group {}",
                    req.group,
                    limits.max_storages_per_group
                );
                return Err(Status::ENOSPC);
            }
        }
        Ok(())
    }

    /// A report connection of a joined storage closed (§7.1).
    pub fn disconnected(&mut self, group: &str, id: &str) {
        let Some(g) = self.groups.get_mut(group) else { return };
        let Some(s) = g.storages.get_mut(id) else { return };
        s.connections = s.connections.saturating_sub(1);
        if s.connections == 0 && matches!(s.status, ONLINE | ACTIVE) {
            g.set_status(id, OFFLINE);
            self.dirty = true;
        }
    }

    /// BEAT / DISK_USAGE: the storage is alive and serving.
    pub fn alive(&mut self, group: &str, id: &str, now: i64) {
        let Some(g) = self.groups.get_mut(group) else { return };
        let Some(s) = g.storages.get_mut(id) else { return };
        s.last_heart_beat_time = now;
        if matches!(s.status, OFFLINE | ONLINE) {
            g.set_status(id, ACTIVE);
            self.dirty = true;
        }
    }

    pub fn beat(&mut self, group: &str, id: &str, stat: Option<StatBuff>, now: i64) {
        if let (Some(stat), Some(s)) = (stat, self.storage_mut(group, id)) {
            s.stat = stat;
        }
        self.alive(group, id, now);
    }

    pub fn disk_usage(&mut self, group: &str, id: &str, paths: Vec<PathUsage>, now: i64) {
        if let Some(s) = self.storage_mut(group, id) {
            s.total_mb = paths.iter().map(|p| p.total_mb).sum();
            s.free_mb = paths.iter().map(|p| p.free_mb).sum();
            s.paths = paths;
        }
        self.alive(group, id, now);
    }

    /// 89: per-source timestamps; entries for itself, unknown peers or ≤ 0 are ignored.
    pub fn sync_report(&mut self, group: &str, id: &str, entries: &[SyncTimestamp]) {
        let Some(g) = self.groups.get_mut(group) else { return };
        let peers: Vec<String> = g.storages.keys().filter(|k| k.as_str() != id).cloned().collect();
        let Some(s) = g.storages.get_mut(id) else { return };
        for e in entries {
            if e.timestamp > 0 && peers.contains(&e.peer_id) {
                let v = s.synced_from.entry(e.peer_id.clone()).or_insert(0);
                *v = (*v).max(e.timestamp);
            }
        }
    }

    /// Periodic check: ACTIVE storages silent for longer than `check_active_interval` go
    /// OFFLINE. Returns how many changed.
    pub fn expire(&mut self, now: i64, check_active_interval: i64) -> usize {
        let mut n = 0;
        for g in self.groups.values_mut() {
            let stale: Vec<String> = g
                .storages
                .values()
                .filter(|s| s.status == ACTIVE && now - s.last_heart_beat_time > check_active_interval)
                .map(|s| s.id.clone())
                .collect();
            for id in stale {
                tracing::warn!("storage {}/{id}: no heartbeat for over {check_active_interval} s", g.name);
                n += g.set_status(&id, OFFLINE) as usize;
            }
        }
        self.dirty |= n > 0;
        n
    }

    /// 87 SYNC_DEST_REQ: a new storage asks who fills it.
    pub fn sync_dest_req(&mut self, group: &str, id: &str, now: i64) -> Result<Option<(String, i64)>, Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        let others: Vec<&StorageNode> = g.storages.values().filter(|s| s.id != id && s.status.available()).collect();
        if others.is_empty() {
            g.set_status(id, ONLINE);
            self.dirty = true;
            return Ok(None);
        }
        let src = others.iter().find(|s| s.writable()).map(|s| s.id.clone()).ok_or(Status::ENOENT)?;
        let s = g.storages.get_mut(id).ok_or(Status::ENOENT)?;
        s.sync_src_id = src.clone();
        s.sync_until_timestamp = now;
        g.set_status(id, WAIT_SYNC);
        self.dirty = true;
        Ok(Some((src, now)))
    }

    /// 88 SYNC_NOTIFY.
    pub fn sync_notify(&mut self, group: &str, id: &str, src: &str, until: i64) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        let cur = g.storages.get(id).ok_or(Status::ENOENT)?.status;
        if src.is_empty() {
            if matches!(cur, INIT | WAIT_SYNC | SYNCING) {
                g.set_status(id, ONLINE);
            }
        } else {
            match g.storages.get(src).map(|s| s.status) {
                None | Some(DELETED | IP_CHANGED) => return Err(Status::ENOENT),
                _ => {}
            }
            let s = g.storages.get_mut(id).expect("checked above");
            if s.sync_src_id.is_empty() {
                s.sync_src_id = src.to_owned();
                s.sync_until_timestamp = until;
            }
            if cur == INIT {
                g.set_status(id, WAIT_SYNC);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// 86 SYNC_SRC_REQ from a would-be source about destination `dest`.
    pub fn sync_src_req(&mut self, group: &str, dest: &str) -> Result<Option<(String, i64)>, Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        let d = g.storages.get(dest).ok_or(Status::ENOENT)?;
        if matches!(d.status, INIT | DELETED | IP_CHANGED) {
            return Err(Status::ENOENT);
        }
        if d.sync_src_id.is_empty() {
            return Ok(None);
        }
        let src_ok =
            g.storages.get(&d.sync_src_id).is_some_and(|s| matches!(s.status, OFFLINE | ONLINE | ACTIVE | RECOVERY));
        if !src_ok {
            let d = g.storages.get_mut(dest).expect("present");
            d.sync_src_id.clear();
            d.sync_until_timestamp = 0;
            self.dirty = true;
            return Ok(None);
        }
        Ok(Some((d.sync_src_id.clone(), d.sync_until_timestamp)))
    }

    /// 76 REPORT_STATUS: a source moves its destination to SYNCING or OFFLINE; a storage
    /// reports itself in RECOVERY.
    pub fn report_status(&mut self, group: &str, brief: &Brief, sender_ip: &str) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        let cur = g.storages.get(&brief.id).ok_or(Status::ENOENT)?.status;
        // Only the group's members report statuses (a sync source its destination, a recovering
        // storage itself): an unauthenticated packet from anyone else changes nothing.
        let member = |s: &StorageNode| s.ip == sender_ip && !matches!(s.status, IP_CHANGED | DELETED);
        let allowed = match brief.status {
            RECOVERY => g.storages.get(&brief.id).is_some_and(member),
            _ => g.storages.values().any(member),
        };
        if !allowed {
            tracing::warn!(
                "{sender_ip}: refused status {} for {group}/{}: not a member of the group",
                brief.status.name(),
                brief.id
            );
            return Err(Status::EACCES);
        }
        let ok = match brief.status {
            SYNCING => matches!(cur, WAIT_SYNC | SYNCING | INIT),
            OFFLINE => matches!(cur, WAIT_SYNC | SYNCING | RECOVERY | OFFLINE),
            RECOVERY => true,
            _ => false,
        };
        if ok {
            g.set_status(&brief.id, brief.status);
            self.dirty = true;
        }
        Ok(())
    }

    /// 59 CHANGE_STATUS: a storage aligning this tracker with the leader.
    pub fn change_status(&mut self, group: &str, id: &str, new: StorageStatus) {
        let Some(g) = self.groups.get_mut(group) else { return };
        let Some(cur) = g.storages.get(id).map(|s| s.status) else { return };
        if cur == new || (cur.available() && new.available()) {
            return;
        }
        let new = if matches!(new, ONLINE | ACTIVE) { OFFLINE } else { new };
        g.set_status(id, new);
        self.dirty = true;
    }

    /// 93 DELETE_STORAGE.
    pub fn delete_storage(&mut self, group: &str, id: &str, now: i64) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        let cur = g.storages.get(id).ok_or(Status::ENOENT)?.status;
        match cur {
            IP_CHANGED => return Err(Status::ENOENT),
            ONLINE | ACTIVE | RECOVERY => return Err(Status::EBUSY),
            DELETED => return Err(Status::EALREADY),
            _ => {}
        }
        g.set_status(id, DELETED);
        for s in g.storages.values_mut() {
            if s.sync_src_id == id {
                s.sync_src_id.clear();
            }
        }
        self.changelog.extend_from_slice(format!("{now} {group} {id} {} \n", DELETED.byte()).as_bytes());
        self.dirty = true;
        Ok(())
    }

    /// 108 DELETE_GROUP: only a group with no live storages.
    pub fn delete_group(&mut self, group: &str) -> Result<(), Status> {
        let g = self.groups.get(group).ok_or(Status::ENOENT)?;
        if g.storages.values().any(|s| s.status != DELETED) {
            return Err(Status::EBUSY);
        }
        self.groups.remove(group);
        self.dirty = true;
        Ok(())
    }

    /// 78 REPORT_IP_CHANGED (IP mode): the storage known as `old` comes back as `new`. Its
    /// record moves to the new address with everything it had (status, sync source, sync
    /// positions, changelog position, trunk-server role); the old address stays as an
    /// IP_CHANGED record, as in C; the members' references follow; the changelog says
    /// `old 3 new` so the members rename their mark files and continue where they were.
    pub fn ip_changed(&mut self, group: &str, old: &str, new: &str, now: i64) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::ENOENT)?;
        if old == new {
            return Ok(());
        }
        if g.storages.get(new).is_some_and(|s| s.status != IP_CHANGED && s.status != DELETED) {
            return Err(Status::EEXIST);
        }
        let Some(mut node) = g.storages.get(old).filter(|s| s.status != IP_CHANGED).cloned() else {
            return Err(Status::ENOENT);
        };
        // As C: a storage still online at its old address has not moved; whoever says so is
        // not it (anyone can send 78).
        if matches!(node.status, ONLINE | ACTIVE) || node.connections > 0 {
            tracing::warn!("{new}: refused to move storage {group}/{old}, which is still online there");
            return Err(Status::EBUSY);
        }
        tracing::info!("storage {group}/{old} changed its address to {new}");
        let mut left = node.clone();
        left.status = IP_CHANGED;
        node.id = new.to_owned();
        node.ip = new.to_owned();
        node.connections = 0;
        g.storages.insert(old.to_owned(), left);
        g.storages.insert(new.to_owned(), node);
        for s in g.storages.values_mut() {
            if s.sync_src_id == old {
                s.sync_src_id = new.to_owned();
            }
            if let Some(t) = s.synced_from.remove(old) {
                s.synced_from.insert(new.to_owned(), t);
            }
        }
        if g.trunk_server == old {
            g.trunk_server = new.to_owned();
            g.last_trunk_server = new.to_owned();
            g.trunk_epoch += 1;
        }
        g.change_counter += 1;
        self.changelog.extend_from_slice(format!("{now} {group} {old} {} {new}\n", IP_CHANGED.byte()).as_bytes());
        self.dirty = true;
        Ok(())
    }

    /// 77: the changelog part this storage has not read yet (at most 8 KiB of whole lines).
    pub fn changelog_for(&mut self, group: &str, id: &str) -> Vec<u8> {
        let Some(from) = self.storage(group, id).map(|s| (s.changelog_offset as usize).min(self.changelog.len()))
        else {
            return Vec::new();
        };
        let rest = &self.changelog[from..];
        let mut take = rest.len().min(8192);
        if take < rest.len() {
            take = rest[..take].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        }
        let chunk = rest[..take].to_vec();
        if let Some(s) = self.storage_mut(group, id) {
            s.changelog_offset = (from + take) as u64;
        }
        chunk
    }
}

/// Who a joining storage is: its ID (its address without storage IDs; else the entry of
/// storage_ids.conf its address, or with `trust_storage_server_id` its claim, finds) and its
/// read/write mode. EINVAL for a request no storage sends, ENOENT for one the table lacks.
fn identify(req: &JoinReq, peer_ip: &str, ids: &IdPolicy) -> Result<(String, RwMode), Status> {
    if !valid_group_name(&req.group)
        || !(1..=65535).contains(&req.storage_port)
        || !(1..=256).contains(&req.store_path_count)
        || !(1..=256).contains(&req.subdir_count_per_path)
    {
        return Err(Status::EINVAL);
    }
    let Some(table) = &ids.ids else { return Ok((peer_ip.to_owned(), RwMode::Both)) };
    let by_addr = table.find(&req.group, peer_ip, req.storage_port as u16);
    let by_claim = (ids.trust_storage_server_id && !req.storage_id.is_empty())
        .then(|| req.storage_id.parse().ok().and_then(|n| table.by_id(n)))
        .flatten()
        .filter(|e| e.group == req.group);
    let e = by_claim.or(by_addr).ok_or(Status::ENOENT)?;
    Ok((e.id.to_string(), e.rw))
}

/// The status a storage joins with: `known`, the one the tracker holds for it (a storage that
/// was serving comes back ONLINE), else what the storage says of itself.
fn join_status(known: Option<StorageStatus>, req: &JoinReq) -> Result<StorageStatus, Status> {
    Ok(match known {
        None if req.init_flag || req.status < 0 => INIT,
        // A storage the tracker does not know that says its data is complete (the tracker
        // lost its state): believe it, but it must beat again before taking traffic.
        None => match StorageStatus::from_byte(req.status as u8) {
            ACTIVE | ONLINE | OFFLINE => ONLINE,
            s @ (WAIT_SYNC | SYNCING | RECOVERY) => s,
            INIT => INIT,
            _ => return Err(Status::EFAULT),
        },
        Some(OFFLINE | RECOVERY | ONLINE) => ONLINE,
        Some(s) => s,
    })
}

impl Group {
    /// A group not shaped yet, or that no storage is in any more (a copy of C's state taken
    /// between a group's creation and its first storage's values says 0), takes the shape of
    /// the storage that joins; otherwise the storage must have the group's store path and
    /// subdirectory counts, and (without storage IDs) its port.
    fn check_shape(&mut self, req: &JoinReq, id: &str, same_port: bool) -> Result<(), Status> {
        let (paths, subdirs, port) =
            (req.store_path_count as usize, req.subdir_count_per_path as u32, req.storage_port as u16);
        if self.store_path_count == 0 || self.subdir_count_per_path == 0 || self.storages.is_empty() {
            (self.store_path_count, self.subdir_count_per_path) = (paths, subdirs);
            if self.storages.is_empty() {
                self.storage_port = port;
            }
        }
        if self.store_path_count != paths || self.subdir_count_per_path != subdirs {
            tracing::error!(
                "storage {id} of {}: store_path_count/subdir_count_per_path {paths}/{subdirs} differ from the group's {}/{}",
                req.group, self.store_path_count, self.subdir_count_per_path
            );
            return Err(Status::EINVAL);
        }
        if self.storage_port != port && same_port {
            tracing::error!(
                "storage {id} of {}: port {port} differs from the group's {}",
                req.group,
                self.storage_port
            );
            return Err(Status::EINVAL);
        }
        Ok(())
    }
}

impl StorageNode {
    /// What a JOIN tells of the storage, taken on every join.
    fn update_from(&mut self, req: &JoinReq, ip: &str, rw_mode: RwMode) {
        let paths = req.store_path_count as usize;
        self.ip = ip.to_owned();
        self.rw_mode = rw_mode;
        self.version = req.version.clone();
        self.domain_name = req.domain_name.clone();
        self.up_time = req.up_time;
        self.storage_port = req.storage_port as u16;
        self.http_port = req.storage_http_port;
        self.store_path_count = paths;
        self.subdir_count_per_path = req.subdir_count_per_path as u32;
        self.upload_priority = req.upload_priority;
        self.connections += 1;
        if self.paths.len() != paths {
            self.paths = vec![PathUsage::default(); paths];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(trackers: Vec<String>) -> JoinReq {
        JoinReq {
            group: "group1".into(),
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            init_flag: true,
            trackers,
            ..Default::default()
        }
    }

    #[test]
    fn two_address_entries_answer_each_client_with_its_class() {
        let ids = crate::config::StorageIds::parse(
            "100001 group1 10.0.0.5,203.0.113.7\n100002 group1 10.0.0.6\n",
            std::path::Path::new("storage_ids.conf"),
        )
        .unwrap();
        let p = IdPolicy { ids: Some(ids), trust_storage_server_id: true };
        let inner: std::net::IpAddr = "10.9.9.9".parse().unwrap();
        let outer: std::net::IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(p.for_client("10.0.0.5", inner), "10.0.0.5");
        assert_eq!(p.for_client("10.0.0.5", outer), "203.0.113.7");
        assert_eq!(p.for_client("203.0.113.7", inner), "10.0.0.5");
        assert_eq!(p.for_client("10.0.0.6", outer), "10.0.0.6", "one address: that one");
        assert_eq!(IdPolicy::default().for_client("10.0.0.5", outer), "10.0.0.5");
    }

    #[test]
    fn an_ip_change_moves_the_record_and_tells_the_members() {
        let mut c = Cluster::default();
        for ip in ["127.0.0.2", "127.0.0.3"] {
            c.join(&join(vec![]), ip, &IdPolicy::default(), &Limits::default(), 1).unwrap();
        }
        c.groups.get_mut("group1").unwrap().storages.get_mut("127.0.0.2").unwrap().sync_src_id = "127.0.0.3".into();
        c.sync_report("group1", "127.0.0.2", &[SyncTimestamp { peer_id: "127.0.0.3".into(), timestamp: 77 }]);
        assert_eq!(
            c.ip_changed("group1", "127.0.0.3", "127.0.0.2", 5),
            Err(Status::EEXIST),
            "the new address is in use"
        );
        assert_eq!(c.ip_changed("group1", "127.0.0.9", "127.0.0.8", 5), Err(Status::ENOENT));
        assert_eq!(c.ip_changed("group1", "127.0.0.3", "127.0.0.4", 5), Err(Status::EBUSY), "still connected there");
        c.disconnected("group1", "127.0.0.3");
        c.ip_changed("group1", "127.0.0.3", "127.0.0.4", 5).unwrap();
        let g = &c.groups["group1"];
        assert_eq!(g.storages["127.0.0.3"].status, IP_CHANGED);
        assert_eq!(g.storages["127.0.0.4"].ip, "127.0.0.4");
        assert_eq!(g.storages["127.0.0.2"].sync_src_id, "127.0.0.4");
        assert_eq!(g.storages["127.0.0.2"].synced_from.get("127.0.0.4"), Some(&77));
        assert_eq!(c.changelog_for("group1", "127.0.0.2"), b"5 group1 127.0.0.3 3 127.0.0.4\n");
        assert_eq!(
            c.changelog_for("group1", "127.0.0.4"),
            b"5 group1 127.0.0.3 3 127.0.0.4\n",
            "the mover reads it too"
        );
        assert_eq!(c.ip_changed("group1", "127.0.0.3", "127.0.0.5", 6), Err(Status::ENOENT), "the old record moved on");
    }

    /// A copy of C's state taken between a group's creation and its first storage's values
    /// holds the group with 0/0 (loaded as such): the first storage to join gives its shape,
    /// instead of being refused for ever; a shaped group still refuses a storage of another.
    #[test]
    fn a_group_without_shape_takes_the_first_joining_storage_s() {
        let mut c = Cluster::default();
        c.groups.insert(
            "group1".into(),
            Group { name: "group1".into(), store_path_count: 0, subdir_count_per_path: 0, ..Default::default() },
        );
        let j = join(vec![]);
        c.join(&j, "127.0.0.2", &IdPolicy::default(), &Limits::default(), 1).expect("the first storage shapes it");
        let g = &c.groups["group1"];
        assert_eq!(
            (g.store_path_count, g.subdir_count_per_path),
            (j.store_path_count as usize, j.subdir_count_per_path as u32)
        );
        let mut other = join(vec![]);
        other.subdir_count_per_path = 16;
        assert_eq!(
            c.join(&other, "127.0.0.3", &IdPolicy::default(), &Limits::default(), 1).unwrap_err(),
            Status::EINVAL
        );
    }

    #[test]
    fn joins_cannot_grow_the_tracker_list_past_sixteen() {
        let mut c = Cluster::default();
        for round in 0..3 {
            let list = (0..16).map(|i| format!("10.{round}.0.{i}:22122")).collect();
            c.join(&join(list), "127.0.0.2", &IdPolicy::default(), &Limits::default(), 1).unwrap();
        }
        assert_eq!(c.trackers.len(), crate::protocol::MAX_TRACKERS);
        assert_eq!(c.storage("group1", "127.0.0.2").unwrap().status, status::INIT);
    }

    #[test]
    fn limits_refuse_new_groups_and_members_but_not_known_ones() {
        let mut c = Cluster::default();
        let limits = Limits { max_groups: 1, max_storages_per_group: 2 };
        let ids = IdPolicy::default();
        let mut j = join(vec!["127.0.0.1:22122".into()]);
        for ip in ["127.0.0.2", "127.0.0.3"] {
            c.join(&j, ip, &ids, &limits, 1).unwrap();
        }
        assert_eq!(c.join(&j, "127.0.0.4", &ids, &limits, 1).unwrap_err(), Status::ENOSPC, "a third member");
        c.join(&j, "127.0.0.2", &ids, &limits, 1).expect("a known member joins again");
        j.group = "group2".into();
        assert_eq!(c.join(&j, "127.0.0.5", &ids, &limits, 1).unwrap_err(), Status::ENOSPC, "a second group");
    }
    /// The status machine of PROTOCOL.md §7.1 as a table: from each status, what each event
    /// leads to (or the error it is answered with).
    #[test]
    fn status_transitions_table() {
        #[derive(Debug, Clone, Copy)]
        enum Event {
            Beat,
            Disconnect,
            Expire,
            Report(StorageStatus),
            Change(StorageStatus),
            Delete,
        }
        use Event::*;
        let table: &[(StorageStatus, Event, Result<StorageStatus, Status>)] = &[
            (ONLINE, Beat, Ok(ACTIVE)),
            (OFFLINE, Beat, Ok(ACTIVE)),
            (WAIT_SYNC, Beat, Ok(WAIT_SYNC)),
            (SYNCING, Beat, Ok(SYNCING)),
            (ACTIVE, Disconnect, Ok(OFFLINE)),
            (ONLINE, Disconnect, Ok(OFFLINE)),
            (SYNCING, Disconnect, Ok(SYNCING)),
            (ACTIVE, Expire, Ok(OFFLINE)),
            (ONLINE, Expire, Ok(ONLINE)),
            (WAIT_SYNC, Report(SYNCING), Ok(SYNCING)),
            (INIT, Report(SYNCING), Ok(SYNCING)),
            (ACTIVE, Report(SYNCING), Ok(ACTIVE)),
            (SYNCING, Report(OFFLINE), Ok(OFFLINE)),
            (ACTIVE, Report(OFFLINE), Ok(ACTIVE)),
            (ACTIVE, Report(RECOVERY), Ok(RECOVERY)),
            (ACTIVE, Report(ACTIVE), Ok(ACTIVE)),
            (ACTIVE, Change(ONLINE), Ok(ACTIVE)),
            (SYNCING, Change(ACTIVE), Ok(OFFLINE)),
            (WAIT_SYNC, Change(SYNCING), Ok(SYNCING)),
            (OFFLINE, Delete, Ok(DELETED)),
            (WAIT_SYNC, Delete, Ok(DELETED)),
            (ACTIVE, Delete, Err(Status::EBUSY)),
            (ONLINE, Delete, Err(Status::EBUSY)),
            (RECOVERY, Delete, Err(Status::EBUSY)),
            (DELETED, Delete, Err(Status::EALREADY)),
            (IP_CHANGED, Delete, Err(Status::ENOENT)),
        ];
        for &(from, event, want) in table {
            let mut c = Cluster::default();
            c.join(&join(vec![]), "127.0.0.2", &IdPolicy::default(), &Limits::default(), 1).unwrap();
            let s = c.storage_mut("group1", "127.0.0.2").unwrap();
            s.status = from;
            s.last_heart_beat_time = 1;
            let r = match event {
                Beat => {
                    c.beat("group1", "127.0.0.2", None, 2);
                    Ok(())
                }
                Disconnect => {
                    c.disconnected("group1", "127.0.0.2");
                    Ok(())
                }
                Expire => {
                    c.expire(1_000, 100);
                    Ok(())
                }
                Report(to) => c.report_status(
                    "group1",
                    &Brief { status: to, port: 23000, id: "127.0.0.2".into(), ip: "127.0.0.2".into() },
                    "127.0.0.2",
                ),
                Change(to) => {
                    c.change_status("group1", "127.0.0.2", to);
                    Ok(())
                }
                Delete => c.delete_storage("group1", "127.0.0.2", 3),
            };
            let got = r.map(|()| c.storage("group1", "127.0.0.2").unwrap().status);
            assert_eq!(got, want, "{} + {event:?}", from.name());
        }
    }
}
