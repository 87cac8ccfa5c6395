//! `fdfs_monitor`'s report, laid out as the original prints it.

use std::fmt::Write;

use super::commas;
use super::datetime;
use crate::protocol::stat::{Counters, GroupStat, StorageStat};
use crate::protocol::status;

pub fn group_report(index: usize, g: &GroupStat, storages: &[StorageStat]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Group {index}:");
    let _ = writeln!(s, "group name = {}", g.group);
    let _ = writeln!(s, "disk total space = {} MB", commas(g.total_mb));
    let _ = writeln!(s, "disk free space = {} MB", commas(g.free_mb));
    let _ = writeln!(s, "trunk free space = {} MB", commas(g.trunk_free_mb));
    let _ = writeln!(s, "storage server count = {}", g.storage_count);
    let _ = writeln!(s, "active server count = {}", g.active_count);
    let _ = writeln!(s, "storage server port = {}", g.storage_port);
    let _ = writeln!(s, "storage HTTP port = {}", g.storage_http_port);
    let _ = writeln!(s, "store path count = {}", g.store_path_count);
    let _ = writeln!(s, "subdir count per path = {}", g.subdir_count_per_path);
    let _ = writeln!(s, "current write server index = {}", g.current_write_server);
    let _ = writeln!(s, "current trunk file id = {}", g.current_trunk_file_id);
    s.push('\n');
    for (i, st) in storages.iter().enumerate() {
        s.push_str(&storage_report(i + 1, st));
    }
    s
}

pub fn storage_report(index: usize, st: &StorageStat) -> String {
    let mut s = String::new();
    let c = &st.stat.counters;
    let _ = writeln!(s, "\tStorage {index}:");
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "\t\t{k} = {v}");
    };
    kv("id", st.id.clone());
    kv("ip_addr", format!("{}  {}", st.ip, status::name(st.status)));
    kv("http domain", st.domain_name.clone());
    kv("version", st.version.clone());
    kv("join time", datetime(st.join_time));
    kv("up time", datetime(st.up_time));
    kv("total storage", format!("{} MB", commas(st.total_mb)));
    kv("free storage", format!("{} MB", commas(st.free_mb)));
    kv("upload priority", st.upload_priority.to_string());
    kv("store_path_count", st.store_path_count.to_string());
    kv("subdir_count_per_path", st.subdir_count_per_path.to_string());
    kv("storage_port", st.storage_port.to_string());
    kv("storage_http_port", st.storage_http_port.to_string());
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
    let lag = if c.last_synced_timestamp > 0 && c.last_heart_beat_time > 0 {
        format!(" ({}s delay)", (c.last_heart_beat_time - c.last_synced_timestamp).max(0))
    } else {
        String::new()
    };
    kv("last_synced_timestamp", format!("{}{lag}", datetime(c.last_synced_timestamp)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shape() {
        let g = GroupStat {
            group: "group1".into(),
            total_mb: 50_166,
            free_mb: 44_024,
            storage_count: 1,
            active_count: 1,
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            ..Default::default()
        };
        let mut st = StorageStat {
            status: 7,
            id: "127.0.0.1".into(),
            ip: "127.0.0.1".into(),
            version: "6.08".into(),
            storage_port: 23000,
            ..Default::default()
        };
        st.stat.counters.total_download_bytes = 5;
        let out = group_report(1, &g, &[st]);
        assert!(out.starts_with("Group 1:\ngroup name = group1\ndisk total space = 50,166 MB\n"), "{out}");
        assert!(out.contains("\tStorage 1:\n\t\tid = 127.0.0.1\n\t\tip_addr = 127.0.0.1  ACTIVE\n"), "{out}");
        assert!(out.contains("\t\tstotal_download_bytes = 5\n"));
        assert!(out.contains("\t\tlast_synced_timestamp = 1970-01-01 00:00:00\n"));
    }
}
