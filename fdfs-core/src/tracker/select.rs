//! Selection policies (PROTOCOL.md §7.3, §7.4): which group, storage and store path an upload
//! goes to, and which storages may serve a read.

use super::state::{Cluster, Group, StorageNode};
use crate::config::{DownloadServer, ReservedSpace, StoreLookup, StorePath, StoreServer, TrackerConfig};
use crate::file_id::{FileInfo, FileType, Source};
use crate::protocol::Status;

/// The policy knobs of tracker.conf that selection reads.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub store_lookup: StoreLookup,
    pub store_server: StoreServer,
    pub store_path: StorePath,
    pub download_server: DownloadServer,
    pub reserved: ReservedSpace,
    pub sync_file_max_delay: i64,
    pub sync_file_max_time: i64,
}

impl Policy {
    pub fn from_config(c: &TrackerConfig) -> Self {
        Self {
            store_lookup: c.store_lookup,
            store_server: c.store_server,
            store_path: c.store_path,
            download_server: c.download_server,
            reserved: c.reserved_storage_space,
            sync_file_max_delay: c.storage_sync_file_max_delay.as_secs() as i64,
            sync_file_max_time: c.storage_sync_file_max_time.as_secs() as i64,
        }
    }
}

/// Where an upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub servers: Vec<(String, u16)>,
    pub store_path_index: u8,
}

fn group_has_space(g: &Group, p: &Policy) -> bool {
    let (total, free) = g.space();
    p.reserved.allows(free, total, 1)
}

/// Picks the group for an upload without a group (`store_lookup`).
fn pick_group<'a>(cluster: &'a mut Cluster, p: &Policy, store_group: &str) -> Result<&'a str, Status> {
    let names: Vec<String> = cluster.groups.keys().cloned().collect();
    if p.store_lookup == StoreLookup::SpecifiedGroup {
        let g = cluster.groups.get(store_group).ok_or(Status::ENOENT)?;
        if g.writable().next().is_none() {
            return Err(Status::ENOENT);
        }
        if !group_has_space(g, p) {
            return Err(Status::ENOSPC);
        }
        return Ok(cluster.groups.get_key_value(store_group).expect("present").0);
    }
    let n = names.len();
    if n == 0 {
        return Err(Status::ENOENT);
    }
    // The current candidate first (round robin cursor, or the freest group), then the rest.
    let start = if p.store_lookup == StoreLookup::LoadBalance {
        cluster
            .groups
            .values()
            .enumerate()
            .filter(|(_, g)| g.writable().next().is_some())
            .max_by_key(|(_, g)| g.space().1)
            .map_or(0, |(i, _)| i)
    } else {
        cluster.group_cursor % n
    };
    let mut any_writable = false;
    for k in 0..n {
        let g = &cluster.groups[&names[(start + k) % n]];
        if g.writable().next().is_none() {
            continue;
        }
        any_writable = true;
        if group_has_space(g, p) {
            if p.store_lookup == StoreLookup::RoundRobin {
                cluster.group_cursor = (start + k + 1) % n;
            }
            return Ok(cluster.groups.get_key_value(&names[(start + k) % n]).expect("present").0);
        }
    }
    Err(if any_writable { Status::ENOSPC } else { Status::ENOENT })
}

/// Picks the storage within a group (`store_server`), advancing the round-robin cursor.
fn pick_storage<'a>(g: &'a mut Group, p: &Policy) -> Option<&'a mut StorageNode> {
    let writable: Vec<String> = g.writable().map(|s| s.id.clone()).collect();
    if writable.is_empty() {
        return None;
    }
    let id = match p.store_server {
        StoreServer::FirstById => writable[0].clone(),
        StoreServer::FirstByPriority => {
            g.writable().min_by_key(|s| s.upload_priority).map(|s| s.id.clone()).expect("non-empty")
        }
        StoreServer::RoundRobin => {
            let i = g.write_cursor % writable.len();
            g.write_cursor = (i + 1) % writable.len();
            writable[i].clone()
        }
    };
    g.storages.get_mut(&id)
}

/// Picks the store path on a storage (`store_path`): round robin or most free, skipping paths
/// below the reserve.
fn pick_path(s: &mut StorageNode, p: &Policy) -> Result<u8, Status> {
    let n = s.paths.len().max(1);
    let fits = |u: &crate::protocol::report::PathUsage| {
        // No report yet: accept (the storage checks its own space on upload).
        (u.total_mb == 0 && u.free_mb == 0) || p.reserved.allows(u.free_mb, u.total_mb, n as i64)
    };
    if p.store_path == StorePath::MostFree {
        return s
            .paths
            .iter()
            .enumerate()
            .filter(|(_, u)| fits(u))
            .max_by_key(|(_, u)| u.free_mb)
            .map(|(i, _)| i as u8)
            .ok_or(Status::ENOSPC);
    }
    for k in 0..n {
        let i = (s.current_write_path + k) % n;
        if s.paths.get(i).is_none_or(fits) {
            s.current_write_path = (i + 1) % n;
            return Ok(i as u8);
        }
    }
    Err(Status::ENOSPC)
}

/// 101/104/106/107.
pub fn store(
    cluster: &mut Cluster,
    p: &Policy,
    store_group: &str,
    group: Option<&str>,
    all: bool,
) -> Result<Target, Status> {
    let name = match group {
        Some(g) => {
            let grp = cluster.groups.get(g).ok_or(Status::ENOENT)?;
            if grp.writable().next().is_none() {
                return Err(Status::ENOENT);
            }
            if !group_has_space(grp, p) {
                return Err(Status::ENOSPC);
            }
            g.to_owned()
        }
        None => pick_group(cluster, p, store_group)?.to_owned(),
    };
    let g = cluster.groups.get_mut(&name).expect("picked");
    let servers: Vec<(String, u16)> =
        if all { g.writable().map(|s| (s.ip.clone(), s.storage_port)).collect() } else { Vec::new() };
    let s = pick_storage(g, p).ok_or(Status::ENOENT)?;
    let store_path_index = pick_path(s, p)?;
    let servers = if all { servers } else { vec![(s.ip.clone(), s.storage_port)] };
    Ok(Target { group: name, servers, store_path_index })
}

/// The storage that wrote a file, from its name.
fn source_of<'a>(g: &'a Group, info: &FileInfo) -> Option<&'a StorageNode> {
    match info.source {
        Source::ServerId(id) => g.storages.get(&id.to_string()),
        Source::Ip(ip) => {
            let ip = ip.to_string();
            g.storages.values().find(|s| s.ip == ip || s.id == ip)
        }
    }
}

/// May storage `s` serve a file with this name (§7.3, plus the per-source check: `s` applied a
/// record from the file's source newer than the file)?
fn has_file(s: &StorageNode, src: Option<&StorageNode>, info: &FileInfo, p: &Policy, now: i64) -> bool {
    let ts = info.create_timestamp as i64;
    if src.is_some_and(|src| src.id == s.id) || ts < now - p.sync_file_max_delay {
        return true;
    }
    let from_src = src.and_then(|src| s.synced_from.get(&src.id)).map_or(0, |&t| t as i64);
    let last = s.last_synced_timestamp().max(from_src);
    last > ts || (last + 1 >= ts && now - ts > p.sync_file_max_time)
}

/// 102/103/105: the storages that may serve (`update` = where changes must go).
pub fn fetch(
    cluster: &mut Cluster,
    p: &Policy,
    group: &str,
    info: &FileInfo,
    update: bool,
    all: bool,
    now: i64,
) -> Result<Vec<(String, u16)>, Status> {
    let g = cluster.groups.get_mut(group).ok_or(Status::ENOENT)?;
    let addr = |s: &StorageNode| (s.ip.clone(), s.storage_port);
    let src = source_of(g, info);
    if update {
        if let Some(s) = src.filter(|s| s.writable()) {
            return Ok(vec![addr(s)]);
        }
        let s = pick_storage(g, p).ok_or(Status::ENOENT)?;
        return Ok(vec![addr(s)]);
    }
    let source_only = info.file_type != FileType::Normal || p.download_server == DownloadServer::SourceFirst;
    if source_only {
        if let Some(s) = src.filter(|s| s.readable()) {
            return Ok(vec![addr(s)]);
        }
    }
    let readable: Vec<&StorageNode> = g.readable().collect();
    let ok: Vec<&StorageNode> = readable.iter().copied().filter(|s| has_file(s, src, info, p, now)).collect();
    if !ok.is_empty() && (info.file_type == FileType::Normal || src.is_none()) {
        if all {
            return Ok(ok.iter().map(|s| addr(s)).collect());
        }
        let start = g.read_cursor % readable.len();
        let pick = (0..readable.len())
            .map(|k| readable[(start + k) % readable.len()])
            .find(|s| ok.iter().any(|o| o.id == s.id))
            .expect("ok is non-empty");
        let out = addr(pick);
        g.read_cursor = (start + 1) % readable.len();
        return Ok(vec![out]);
    }
    // Fallback: the group's store server, if it can read.
    g.writable().next().filter(|s| s.readable()).map(|s| vec![addr(s)]).ok_or(Status::ENOENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_id::{NameCore, RemoteFilename};
    use crate::protocol::report::PathUsage;
    use crate::tracker::state::status::*;

    fn node(id: &str, status: crate::protocol::StorageStatus, free: i64) -> StorageNode {
        StorageNode {
            id: id.into(),
            ip: id.into(),
            status,
            storage_port: 23000,
            paths: vec![PathUsage { total_mb: 1000, free_mb: free }],
            total_mb: 1000,
            free_mb: free,
            upload_priority: 10,
            ..Default::default()
        }
    }

    fn cluster(groups: &[(&str, Vec<StorageNode>)]) -> Cluster {
        let mut c = Cluster::default();
        for (name, nodes) in groups {
            let mut g = Group {
                name: name.to_string(),
                storage_port: 23000,
                store_path_count: 1,
                subdir_count_per_path: 256,
                ..Default::default()
            };
            for n in nodes {
                g.storages.insert(n.id.clone(), n.clone());
            }
            c.groups.insert(name.to_string(), g);
        }
        c
    }

    fn policy() -> Policy {
        Policy {
            store_lookup: StoreLookup::RoundRobin,
            store_server: StoreServer::RoundRobin,
            store_path: StorePath::RoundRobin,
            download_server: DownloadServer::RoundRobin,
            reserved: ReservedSpace::Megabytes(100),
            sync_file_max_delay: 86400,
            sync_file_max_time: 300,
        }
    }

    #[test]
    fn group_lookup_policies() {
        let mut c = cluster(&[
            ("g1", vec![node("127.0.0.1", ACTIVE, 500)]),
            ("g2", vec![node("127.0.0.2", ACTIVE, 900)]),
            ("g3", vec![node("127.0.0.3", OFFLINE, 999)]),
        ]);
        let mut p = policy();
        let picks: Vec<String> = (0..4).map(|_| store(&mut c, &p, "", None, false).unwrap().group).collect();
        assert_eq!(picks, ["g1", "g2", "g1", "g2"]);
        p.store_lookup = StoreLookup::LoadBalance;
        assert_eq!(store(&mut c, &p, "", None, false).unwrap().group, "g2");
        p.store_lookup = StoreLookup::SpecifiedGroup;
        assert_eq!(store(&mut c, &p, "g1", None, false).unwrap().group, "g1");
        assert_eq!(store(&mut c, &p, "g3", None, false), Err(Status::ENOENT));
        assert_eq!(store(&mut c, &p, "nope", None, false), Err(Status::ENOENT));
    }

    #[test]
    fn reserved_space_refuses_full_groups() {
        let mut c = cluster(&[("g1", vec![node("127.0.0.1", ACTIVE, 50)])]);
        let mut p = policy();
        assert_eq!(store(&mut c, &p, "", None, false), Err(Status::ENOSPC));
        assert_eq!(store(&mut c, &p, "", Some("g1"), false), Err(Status::ENOSPC));
        p.reserved = ReservedSpace::Ratio(0.04);
        assert!(store(&mut c, &p, "", None, false).is_ok());
        p.reserved = ReservedSpace::Ratio(0.05);
        assert_eq!(store(&mut c, &p, "", None, false), Err(Status::ENOSPC));
    }

    #[test]
    fn storage_and_path_policies() {
        let mut a = node("127.0.0.1", ACTIVE, 500);
        a.upload_priority = 20;
        a.paths = vec![
            PathUsage { total_mb: 1000, free_mb: 10 },
            PathUsage { total_mb: 1000, free_mb: 400 },
            PathUsage { total_mb: 1000, free_mb: 600 },
        ];
        let b = node("127.0.0.2", ACTIVE, 500);
        let mut c = cluster(&[("g1", vec![a, b])]);
        let mut p = policy();
        let ips: Vec<String> =
            (0..3).map(|_| store(&mut c, &p, "", None, false).unwrap().servers[0].0.clone()).collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.2", "127.0.0.1"]);
        p.store_server = StoreServer::FirstById;
        assert_eq!(store(&mut c, &p, "", None, false).unwrap().servers[0].0, "127.0.0.1");
        p.store_server = StoreServer::FirstByPriority;
        assert_eq!(store(&mut c, &p, "", None, false).unwrap().servers[0].0, "127.0.0.2");
        // Paths of 127.0.0.1: path 0 is below the reserve (100/3 MB), so round robin skips it.
        p.store_server = StoreServer::FirstById;
        let paths: Vec<u8> = (0..4).map(|_| store(&mut c, &p, "", None, false).unwrap().store_path_index).collect();
        assert!(!paths.contains(&0) && paths.contains(&1) && paths.contains(&2), "{paths:?}");
        p.store_path = StorePath::MostFree;
        assert_eq!(store(&mut c, &p, "", None, false).unwrap().store_path_index, 2);
        let all = store(&mut c, &p, "", None, true).unwrap();
        assert_eq!(all.servers.len(), 2);
    }

    fn info_from(src: &str, ts: u32) -> FileInfo {
        let core =
            NameCore { source: Source::Ip(src.parse().unwrap()), timestamp: ts, size_field: 1 << 63 | 5, crc32: 0 };
        let name = format!("M00/00/00/{}1234567", core.to_b64());
        RemoteFilename::parse(&name, None).unwrap().info()
    }

    #[test]
    fn reads_go_only_to_storages_that_have_the_file() {
        let now = 1_800_000_000i64;
        let a = node("127.0.0.1", ACTIVE, 500);
        let mut b = node("127.0.0.2", ACTIVE, 500);
        let mut c = cluster(&[("g1", vec![a.clone(), b.clone()])]);
        let p = policy();
        let fresh = info_from("127.0.0.1", (now - 5) as u32);
        for _ in 0..4 {
            assert_eq!(fetch(&mut c, &p, "g1", &fresh, false, false, now).unwrap(), vec![("127.0.0.1".into(), 23000)]);
        }
        // B applied a record from A newer than the file: both may serve it.
        b.synced_from.insert("127.0.0.1".into(), (now - 1) as i32);
        c.groups.get_mut("g1").unwrap().storages.insert(b.id.clone(), b);
        let picks: std::collections::BTreeSet<String> =
            (0..4).map(|_| fetch(&mut c, &p, "g1", &fresh, false, false, now).unwrap()[0].0.clone()).collect();
        assert_eq!(picks.len(), 2);
        assert_eq!(fetch(&mut c, &p, "g1", &fresh, false, true, now).unwrap().len(), 2);
        // Old files are everywhere.
        let old = info_from("127.0.0.1", (now - 100_000) as u32);
        assert_eq!(fetch(&mut c, &p, "g1", &old, false, true, now).unwrap().len(), 2);
        // Updates go to the source.
        assert_eq!(fetch(&mut c, &p, "g1", &fresh, true, false, now).unwrap()[0].0, "127.0.0.1");
        assert_eq!(fetch(&mut c, &p, "nope", &fresh, false, false, now), Err(Status::ENOENT));
    }
}
