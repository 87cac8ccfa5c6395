//! The tracker's state files under `<base_path>/data` (PROTOCOL.md §7.6), in FastDFS's own
//! format, so a restarted tracker answers at once and a C tracker's files load too.
//! Every file is written atomically: `<name>.tmp`, fsync, rename, fsync of the directory.

use std::path::Path;

use super::state::{status, Cluster, Group, Limits, StorageNode};
use crate::config::{Ini, Keys};
use crate::protocol::stat::Counters;
use crate::protocol::Layout;

pub const GROUPS_FILE: &str = "storage_groups_new.dat";
pub const SERVERS_FILE: &str = "storage_servers_new.dat";
pub const SYNC_TIMESTAMP_FILE: &str = "storage_sync_timestamp.dat";
pub const CHANGELOG_FILE: &str = "storage_changelog.dat";
pub const STATUS_FILE: &str = ".tracker_status";

fn groups_text(c: &Cluster, layout: Layout) -> String {
    let mut s = format!("[Global]\n\tgroup_count={}\n", c.groups.len());
    for (i, g) in c.groups.values().enumerate() {
        s.push_str(&format!("\n# group: {}\n[Group{:03}]\n", g.name, i + 1));
        s.push_str(&format!("\tgroup_name={}\n\tstorage_port={}\n", g.name, g.storage_port));
        if layout == Layout::Classic {
            s.push_str(&format!("\tstorage_http_port={}\n", g.http_port));
        }
        s.push_str(&format!(
            "\tstore_path_count={}\n\tsubdir_count_per_path={}\n\tcurrent_trunk_file_id={}\n\ttrunk_server={}\n\tlast_trunk_server={}\n",
            g.store_path_count, g.subdir_count_per_path, g.current_trunk_file_id, g.trunk_server, g.last_trunk_server
        ));
    }
    s
}

fn servers_text(c: &Cluster, with_ids: bool, layout: Layout) -> String {
    let all: Vec<(&Group, &StorageNode)> =
        c.groups.values().flat_map(|g| g.storages.values().map(move |s| (g, s))).collect();
    let mut s = format!("[Global]\n\tstorage_count={}\n", all.len());
    for (i, (g, n)) in all.iter().enumerate() {
        s.push_str(&format!("\n# storage {}:{}\n[Storage{:03}]\n", n.ip, n.storage_port, i + 1));
        let mut kv = |k: &str, v: String| s.push_str(&format!("\t{k}={v}\n"));
        if with_ids {
            kv("id", n.id.clone());
        }
        kv("group_name", g.name.clone());
        kv("ip_addr", n.ip.clone());
        kv("status", n.status.byte().to_string());
        if layout == Layout::Classic {
            kv("domain_name", n.domain_name.clone());
        }
        kv("version", n.version.clone());
        kv("join_time", n.join_time.to_string());
        kv("storage_port", n.storage_port.to_string());
        if layout == Layout::Classic {
            kv("storage_http_port", n.http_port.to_string());
        }
        kv("sync_src_server", n.sync_src_id.clone());
        kv("sync_until_timestamp", n.sync_until_timestamp.to_string());
        kv("total_mb", n.total_mb.to_string());
        kv("free_mb", n.free_mb.to_string());
        kv("changelog_offset", n.changelog_offset.to_string());
        kv("store_path_count", n.store_path_count.to_string());
        kv("subdir_count_per_path", n.subdir_count_per_path.to_string());
        kv("upload_priority", n.upload_priority.to_string());
        let mut counters = n.stat.counters;
        counters.last_heart_beat_time = n.last_heart_beat_time;
        counters.last_synced_timestamp = n.last_synced_timestamp();
        for (name, v) in Counters::NAMES.iter().zip(counters.values()) {
            kv(name, v.to_string());
        }
    }
    s
}

/// Row = source storage, columns = what each storage of the group has applied from it.
fn sync_timestamps_text(c: &Cluster) -> String {
    let mut s = String::new();
    for g in c.groups.values() {
        let live: Vec<&StorageNode> =
            g.storages.values().filter(|n| !matches!(n.status, status::DELETED | status::IP_CHANGED)).collect();
        for src in &live {
            let cols: Vec<String> =
                live.iter().map(|d| d.synced_from.get(&src.id).copied().unwrap_or(0).to_string()).collect();
            s.push_str(&format!("{},{},{}\n", g.name, src.id, cols.join(",")));
        }
    }
    s
}

/// The four files a tracker copies from another (63 GET_ONE_SYS_FILE's index order).
pub const SYS_FILES: [&str; 4] = [GROUPS_FILE, SERVERS_FILE, SYNC_TIMESTAMP_FILE, CHANGELOG_FILE];

/// The content of the four state files, in [`SYS_FILES`] order.
pub fn sys_files(c: &Cluster, with_ids: bool, layout: Layout) -> [Vec<u8>; 4] {
    [
        groups_text(c, layout).into_bytes(),
        servers_text(c, with_ids, layout).into_bytes(),
        sync_timestamps_text(c).into_bytes(),
        c.changelog.clone(),
    ]
}

/// Writes all state files.
pub fn save(dir: &Path, c: &Cluster, with_ids: bool, layout: Layout, up_time: i64, now: i64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in SYS_FILES.iter().zip(sys_files(c, with_ids, layout)) {
        crate::durable::write_atomic(dir, name, &text)?;
    }
    crate::durable::write_atomic(dir, STATUS_FILE, format!("up_time={up_time}\nlast_check_time={now}\n").as_bytes())
}

/// Loads what a previous run (ours or a C tracker) saved. Storages that were serving come
/// back OFFLINE until they join again.
/// A number from a state file; a damaged value is reported and replaced by the default rather
/// than stopping the start.
fn int(k: &Keys<'_>, key: &str, default: i64) -> i64 {
    k.int(key, default).unwrap_or_else(|e| {
        tracing::warn!("{e}; using {default}");
        default
    })
}

pub fn load(dir: &Path, limits: &Limits) -> Result<Cluster, crate::config::ConfigError> {
    let mut c = Cluster::default();
    let groups_path = dir.join(GROUPS_FILE);
    if !groups_path.exists() {
        return Ok(c);
    }
    load_groups(&mut c, &groups_path, limits)?;
    let servers_path = dir.join(SERVERS_FILE);
    if servers_path.exists() {
        load_storages(&mut c, &servers_path, limits)?;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(SYNC_TIMESTAMP_FILE)) {
        load_sync_timestamps(&mut c, &text);
    }
    c.changelog = std::fs::read(dir.join(CHANGELOG_FILE)).unwrap_or_default();
    Ok(c)
}

/// `storage_groups_new.dat`: the groups, at most `max_groups` of them.
fn load_groups(c: &mut Cluster, groups_path: &Path, limits: &Limits) -> Result<(), crate::config::ConfigError> {
    let gi = Ini::load_state(groups_path)?;
    let count = int(&gi.section(Some("Global")), "group_count", 0);
    if count > limits.max_groups as i64 {
        tracing::warn!(
            "{}: {count} groups, only the first max_groups ({}) are kept",
            groups_path.display(),
            limits.max_groups
        );
    }
    for i in 1..=count.clamp(0, limits.max_groups as i64) {
        let k = gi.section(Some(&format!("Group{i:03}")));
        let name = k.string("group_name", "");
        // State files may come from another tracker (a copy at bootstrap): what a JOIN would
        // refuse is not taken from them either.
        if !crate::protocol::valid_group_name(&name) {
            if !name.is_empty() {
                tracing::warn!("{}: group {i}: name {name:?} is not a group name; skipped", groups_path.display());
            }
            continue;
        }
        c.groups.insert(
            name.clone(),
            Group {
                name,
                storage_port: int(&k, "storage_port", 23000).clamp(0, 65535) as u16,
                http_port: int(&k, "storage_http_port", 0),
                // 0: not shaped yet (C writes a group before its first storage's values are
                // set); the first JOIN gives them.
                store_path_count: int(&k, "store_path_count", 1).clamp(0, 256) as usize,
                subdir_count_per_path: int(&k, "subdir_count_per_path", 256).clamp(0, 256) as u32,
                current_trunk_file_id: int(&k, "current_trunk_file_id", 0),
                trunk_server: k.string("trunk_server", "").trim().to_owned(),
                last_trunk_server: k.string("last_trunk_server", "").trim().to_owned(),
                ..Default::default()
            },
        );
    }
    Ok(())
}

/// `storage_servers_new.dat`: the storages of the groups loaded, at most
/// `max_storages_per_group` each; a storage that was serving comes back OFFLINE.
fn load_storages(c: &mut Cluster, servers_path: &Path, limits: &Limits) -> Result<(), crate::config::ConfigError> {
    let si = Ini::load_state(servers_path)?;
    let count = int(&si.section(Some("Global")), "storage_count", 0);
    for i in 1..=count.clamp(0, 1 << 16) {
        let k = si.section(Some(&format!("Storage{i:03}")));
        let group = k.string("group_name", "");
        let Some(g) = c.groups.get_mut(&group) else { continue };
        if g.storages.len() >= limits.max_storages_per_group {
            tracing::warn!(
                "{}: group {group} has more than max_storages_per_group; storage {i} dropped",
                servers_path.display()
            );
            continue;
        }
        let ip = k.string("ip_addr", "");
        let id = k.opt_string("id").unwrap_or_else(|| ip.clone());
        if id.is_empty() || !crate::protocol::is_safe_token(&id) || !crate::protocol::is_safe_token(&ip) {
            tracing::warn!("{}: storage {i}: id {id:?} / address {ip:?} not valid; skipped", servers_path.display());
            continue;
        }
        let mut st = crate::protocol::StorageStatus::from_byte(int(&k, "status", 0).clamp(0, 255) as u8);
        if matches!(st, status::ONLINE | status::ACTIVE) {
            st = status::OFFLINE;
        }
        g.storages.insert(id.clone(), storage_node(&k, id, ip, st));
    }
    Ok(())
}

/// A storage's record from its section of `storage_servers_new.dat`.
fn storage_node(k: &Keys<'_>, id: String, ip: String, status: crate::protocol::StorageStatus) -> StorageNode {
    let mut n = StorageNode {
        id,
        ip,
        status,
        domain_name: k.string("domain_name", ""),
        version: k.string("version", ""),
        join_time: int(k, "join_time", 0),
        storage_port: int(k, "storage_port", 23000).clamp(0, 65535) as u16,
        http_port: int(k, "storage_http_port", 0),
        sync_src_id: k.string("sync_src_server", ""),
        sync_until_timestamp: int(k, "sync_until_timestamp", 0),
        total_mb: int(k, "total_mb", 0),
        free_mb: int(k, "free_mb", 0),
        changelog_offset: int(k, "changelog_offset", 0).max(0) as u64,
        store_path_count: int(k, "store_path_count", 1).clamp(1, 256) as usize,
        subdir_count_per_path: int(k, "subdir_count_per_path", 256).clamp(1, 256) as u32,
        upload_priority: int(k, "upload_priority", 10),
        ..Default::default()
    };
    for name in Counters::NAMES {
        n.stat.counters.set(name, int(k, name, 0));
    }
    n.last_heart_beat_time = n.stat.counters.last_heart_beat_time;
    n.paths = vec![Default::default(); n.store_path_count];
    n
}

/// `storage_sync_timestamp.dat`: per group, a line per source with the newest timestamp each
/// other member applied from it.
fn load_sync_timestamps(c: &mut Cluster, text: &str) {
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let Some(g) = f.first().and_then(|name| c.groups.get_mut(*name)) else { continue };
        let src = f.get(1).copied().unwrap_or_default().to_owned();
        let dests: Vec<String> = g
            .storages
            .values()
            .filter(|n| !matches!(n.status, status::DELETED | status::IP_CHANGED))
            .map(|n| n.id.clone())
            .collect();
        for (dest, v) in dests.iter().zip(f.iter().skip(2)) {
            if let (Ok(ts), Some(d)) = (v.parse::<i32>(), g.storages.get_mut(dest)) {
                if ts > 0 && *dest != src {
                    d.synced_from.insert(src.clone(), ts);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::PathUsage;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::default();
        let mut g = Group {
            name: "group1".into(),
            storage_port: 23000,
            store_path_count: 2,
            subdir_count_per_path: 256,
            ..Default::default()
        };
        for (ip, st) in [("127.0.0.2", status::ACTIVE), ("127.0.0.3", status::WAIT_SYNC)] {
            let mut n = StorageNode {
                id: ip.into(),
                ip: ip.into(),
                status: st,
                version: "6.08".into(),
                storage_port: 23000,
                store_path_count: 2,
                subdir_count_per_path: 256,
                paths: vec![PathUsage::default(); 2],
                total_mb: 100,
                free_mb: 50,
                ..Default::default()
            };
            n.stat.counters.success_upload_count = 7;
            g.storages.insert(ip.into(), n);
        }
        g.storages.get_mut("127.0.0.3").unwrap().synced_from.insert("127.0.0.2".into(), 1_700_000_000);
        g.storages.get_mut("127.0.0.3").unwrap().sync_src_id = "127.0.0.2".into();
        c.groups.insert("group1".into(), g);
        c.changelog = b"1700000000 group1 127.0.0.9 4 \n".to_vec();
        save(dir.path(), &c, false, Layout::Classic, 1, 2).unwrap();

        let text = std::fs::read_to_string(dir.path().join(GROUPS_FILE)).unwrap();
        assert!(
            text.starts_with("[Global]\n\tgroup_count=1\n\n# group: group1\n[Group001]\n\tgroup_name=group1\n"),
            "{text}"
        );
        let back = load(dir.path(), &Limits::default()).unwrap();
        let g = &back.groups["group1"];
        assert_eq!(g.store_path_count, 2);
        let a = &g.storages["127.0.0.2"];
        assert_eq!(a.status, status::OFFLINE, "serving storages come back OFFLINE");
        assert_eq!(a.stat.counters.success_upload_count, 7);
        let b = &g.storages["127.0.0.3"];
        assert_eq!(b.status, status::WAIT_SYNC);
        assert_eq!(b.sync_src_id, "127.0.0.2");
        assert_eq!(b.synced_from.get("127.0.0.2"), Some(&1_700_000_000));
        assert_eq!(back.changelog, c.changelog);
        assert!(!dir.path().join(format!("{GROUPS_FILE}.tmp")).exists());
    }

    #[test]
    fn damaged_state_files_are_read_around() {
        // What an unescaped domain name once did to a state file, plus a torn last line.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(GROUPS_FILE),
            "[Global]\n\tgroup_count=1\n[Group001]\n\tgroup_name=group1\n\tstorage_port=23000\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(SERVERS_FILE),
            "[Global]\n\tstorage_count=1\n[Storage001]\n\tgroup_name=group1\n\tip_addr=127.0.0.2\n\tstatus=7\n\
             \tdomain_name=evil\n\tjoin_time=zzz\n\tjoin_time=1700000000\n\t#include /etc/passwd\n\tgarbage line\n\ttotal_mb=1",
        )
        .unwrap();
        let c = load(dir.path(), &Limits::default()).unwrap();
        let n = &c.groups["group1"].storages["127.0.0.2"];
        assert_eq!(n.join_time, 0, "the damaged value is replaced by the default");
        assert_eq!(n.total_mb, 1, "lines after the damage still count");
        assert_eq!(n.status, status::OFFLINE);
    }
}
