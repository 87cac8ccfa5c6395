//! `fdfs_monitor`'s report, laid out as C 6.16.1 prints it (the layout of 6.13.2 and later:
//! human-sized space, readable/writable counts, `host = ip:port`, read/write mode).

use std::fmt::Write;

use super::{datetime, human_mb};
use crate::protocol::stat::{Counters, GroupStat, StorageStat};

fn rw_caption(mode: u8) -> &'static str {
    match mode {
        0 => "none (disabled)",
        2 => "writeonly",
        4 => "readonly",
        6 => "both (normal)",
        _ => "unknown",
    }
}

/// One group and its storages (C's `list_storages`); `fdfs_monitor` puts `Group N:` above it
/// when it lists every group.
pub fn group_report(g: &GroupStat, storages: &[StorageStat]) -> String {
    let mut s = String::new();
    let avail = (g.free_mb - g.reserved_mb).max(0);
    let _ = writeln!(s, "group name = {}", g.group);
    let _ = writeln!(s, "disk total space     = {:>7}", human_mb(g.total_mb));
    let _ = writeln!(s, "disk free space      = {:>7}", human_mb(g.free_mb));
    let _ = writeln!(s, "disk reserved space  = {:>7}", human_mb(g.reserved_mb));
    let _ = writeln!(s, "disk available space = {:>7}", human_mb(avail));
    // A trunk file id below 0: the tracker runs without trunk files.
    let trunk = g.current_trunk_file_id >= 0;
    if trunk {
        let _ = writeln!(s, "trunk free space = {:>7}", human_mb(g.trunk_free_mb));
    }
    let _ = writeln!(s, "storage server count = {}", g.storage_count);
    let _ = writeln!(s, "readable server count = {}", g.readable_count);
    let _ = writeln!(s, "writable server count = {}", g.writable_count);
    let _ = writeln!(s, "storage server port = {}", g.storage_port);
    let _ = writeln!(s, "store path count = {}", g.store_path_count);
    let _ = writeln!(s, "subdir count per path = {}", g.subdir_count_per_path);
    let _ = writeln!(s, "current write server index = {}", g.current_write_server);
    match storages.iter().find(|st| st.if_trunk_server).filter(|_| trunk) {
        Some(ts) => {
            let _ = writeln!(s, "current trunk server = {} ({})", ts.id, ts.ip);
            let _ = writeln!(s, "current trunk file id = {}\n", g.current_trunk_file_id);
        }
        None => s.push('\n'),
    }
    for (i, st) in storages.iter().enumerate() {
        // The replication delay is measured against the newest source update of the others.
        let newest_other = storages
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.stat.counters.last_source_update)
            .max()
            .unwrap_or(0);
        s.push_str(&storage_report(i + 1, st, newest_other));
    }
    s
}

/// `(N days HHh:MMm:SSs delay)` and shorter forms, as C writes a replication delay.
fn sync_delay(newest_other: i64, synced: i64) -> String {
    if newest_other <= 0 {
        return String::new();
    }
    if synced == 0 {
        return "(never synced)".into();
    }
    let d = (newest_other - synced).max(0);
    let (day, hour, minute, second) = (d / 86_400, d % 86_400 / 3600, d % 3600 / 60, d % 60);
    let text = if day != 0 {
        format!("{day} days {hour:02}h:{minute:02}m:{second:02}s")
    } else if hour != 0 {
        format!("{hour:02}h:{minute:02}m:{second:02}s")
    } else if minute != 0 {
        format!("{minute:02}m:{second:02}s")
    } else {
        format!("{second}s")
    };
    format!("({text} delay)")
}

fn storage_report(index: usize, st: &StorageStat, newest_other: i64) -> String {
    let mut s = String::new();
    let c = &st.stat.counters;
    let _ = writeln!(s, "\tStorage {index}:");
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "\t\t{k} = {v}");
    };
    let port = u16::try_from(st.storage_port).unwrap_or(0);
    kv("id", st.id.clone());
    kv("host", format!("{}  {}", crate::config::join_host_port(&st.ip, port), st.status.name()));
    kv("read write mode", rw_caption(st.rw_mode).into());
    kv("version", st.version.clone());
    kv("join time", datetime(st.join_time));
    kv("up time", if st.up_time != 0 { datetime(st.up_time) } else { String::new() });
    kv("disk total space    ", format!("{:>7}", human_mb(st.total_mb)));
    kv("disk free space     ", format!("{:>7}", human_mb(st.free_mb)));
    kv("disk reserved space ", format!("{:>7}", human_mb(st.reserved_mb)));
    kv("disk available space", format!("{:>7}", human_mb((st.free_mb - st.reserved_mb).max(0))));
    kv("upload priority", st.upload_priority.to_string());
    kv("store_path_count", st.store_path_count.to_string());
    kv("subdir_count_per_path", st.subdir_count_per_path.to_string());
    kv("current_write_path", st.current_write_path.to_string());
    kv("source storage id", st.sync_src_id.clone());
    kv("if_trunk_server", (st.if_trunk_server as u8).to_string());
    kv("connection.alloc_count", st.stat.conn_alloc.to_string());
    kv("connection.current_count", st.stat.conn_current.to_string());
    kv("connection.max_count", st.stat.conn_max.to_string());
    // The counters in wire order, up to the four timestamps printed below.
    for (name, v) in Counters::NAMES.iter().zip(c.values()).take(Counters::NAMES.len() - 4) {
        // The original prints this one misspelled, and scripts grep for it.
        let name = if *name == "total_download_bytes" { "stotal_download_bytes" } else { name };
        kv(name, v.to_string());
    }
    kv("last_heart_beat_time", datetime(c.last_heart_beat_time));
    kv("last_source_update", datetime(c.last_source_update));
    kv("last_sync_update", datetime(c.last_sync_update));
    let delay = sync_delay(newest_other, c.last_synced_timestamp);
    kv("last_synced_timestamp", format!("{} {delay}", datetime(c.last_synced_timestamp)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_as_c_writes_them() {
        assert_eq!(sync_delay(0, 5), "");
        assert_eq!(sync_delay(100, 0), "(never synced)");
        assert_eq!(sync_delay(100, 93), "(7s delay)");
        assert_eq!(sync_delay(100, 200), "(0s delay)");
        assert_eq!(sync_delay(4000, 100), "(01h:05m:00s delay)");
        assert_eq!(sync_delay(90_000, 100), "(1 days 00h:58m:20s delay)");
        assert_eq!(sync_delay(200, 100), "(01m:40s delay)");
    }

    #[test]
    fn report_shape() {
        let g = GroupStat {
            group: "group1".into(),
            total_mb: 258_019,
            free_mb: 61_556,
            reserved_mb: 2580,
            storage_count: 1,
            readable_count: 1,
            writable_count: 1,
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 4,
            current_trunk_file_id: -1,
            ..Default::default()
        };
        let mut st = StorageStat {
            status: crate::protocol::StorageStatus::Active,
            rw_mode: 6,
            id: "127.0.0.102".into(),
            ip: "127.0.0.102".into(),
            version: "6.16.1".into(),
            storage_port: 23000,
            ..Default::default()
        };
        st.stat.counters.total_download_bytes = 5;
        let out = group_report(&g, &[st]);
        assert!(
            out.starts_with(
                "group name = group1\ndisk total space     =  252 GB\ndisk free space      =   60 GB\n\
                 disk reserved space  =  2.5 GB\ndisk available space =   58 GB\nstorage server count = 1\n\
                 readable server count = 1\nwritable server count = 1\n"
            ),
            "{out}"
        );
        assert!(out.contains("current write server index = 0\n\n\tStorage 1:\n\t\tid = 127.0.0.102\n"), "{out}");
        assert!(out.contains("\t\thost = 127.0.0.102:23000  ACTIVE\n\t\tread write mode = both (normal)\n"), "{out}");
        assert!(out.contains("\t\tup time = \n\t\tdisk total space     =    0  B\n"), "{out}");
        assert!(out.contains("\t\tstotal_download_bytes = 5\n"));
        assert!(out.ends_with("\t\tlast_synced_timestamp = 1970-01-01 00:00:00 \n"), "{out}");
        assert!(!out.contains("trunk free space") && !out.contains("current trunk"), "no trunk lines: {out}");
    }
}
