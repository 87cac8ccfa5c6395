//! Config files parse: our shipped samples (`nginx-conf/`) and files in the original FastDFS
//! layout, comments and all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_core::config::*;

fn original(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fastdfs-6.x").join(name)
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nginx-conf").join(name)
}

#[test]
fn original_tracker_conf() {
    let c = TrackerConfig::load(&original("tracker.conf")).unwrap();
    assert_eq!(c.port, 22122);
    assert_eq!(c.base_path, Path::new("/home/yuqing/fastdfs"));
    assert_eq!(c.store_lookup, StoreLookup::LoadBalance);
    assert_eq!(c.store_group, "group2");
    assert_eq!(c.reserved_storage_space, ReservedSpace::Ratio(0.2));
    assert_eq!(c.check_active_interval, Duration::from_secs(120));
    assert_eq!((c.min_buff_size, c.max_buff_size), (8 << 10, 128 << 10));
    assert_eq!(c.slot_max_size, 1 << 20);
    assert!(c.id_type_in_filename_is_id);
    assert!(!c.use_storage_id);
    assert_eq!(c.allow_hosts, AllowHosts::any());
    assert_eq!(c.storage_ids_filename, original("storage_ids.conf"));
}

#[test]
fn original_storage_conf() {
    let c = StorageConfig::load(&original("storage.conf")).unwrap();
    assert_eq!(c.group_name, "group1");
    assert_eq!(c.port, 23000);
    assert_eq!(c.buff_size, 256 << 10);
    assert_eq!(c.store_paths, vec![PathBuf::from("/home/yuqing/fastdfs"), PathBuf::from("/home/yuqing/fastdfs2")]);
    assert_eq!(c.store_path_readonly, vec![false, false]);
    assert_eq!(c.tracker_servers.len(), 2);
    assert_eq!(c.tracker_servers[1].primary(), "192.168.209.122:22122");
    assert_eq!(c.sync_wait_msec, Duration::from_millis(50));
    assert_eq!(c.sync_end_time, (23, 59));
    assert_eq!(c.stat_report_interval, Duration::from_secs(60));
    assert!(c.compress_binlog);
    assert_eq!(c.http_server_port, 8888);
}

#[test]
fn original_client_and_ids() {
    let c = ClientConfig::load(&original("client.conf")).unwrap();
    assert_eq!(c.tracker_servers.len(), 2);
    assert_eq!(c.network_timeout, Duration::from_secs(60));
    let ids = StorageIds::load(&original("storage_ids.conf")).unwrap();
    assert_eq!(ids.entries.len(), 4);
    assert_eq!(ids.by_id(100002).unwrap().hosts, vec!["192.168.0.197", "10.1.1.197"]);
    let v6 = ids.by_id(100003).unwrap();
    assert_eq!((v6.hosts[0].as_str(), v6.port, v6.rw), ("2409:8a20::1", Some(23001), RwMode::None));
    assert_eq!(v6.to_line(), "100003 group2 [2409:8a20::1]:23001 rw=none");
    assert_eq!(ids.find("group1", "192.168.0.196", 23000).unwrap().id, 100001);
    assert!(ids.find("group1", "192.168.0.198", 23002).is_none());
}

#[test]
fn original_mod_fastdfs_with_groups_and_http_include() {
    let c = ModFastdfsConfig::load(&original("mod_fastdfs.conf")).unwrap();
    assert!(c.url_have_group_name);
    assert_eq!(c.response_mode, ResponseMode::Proxy);
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[0].store_paths.len(), 2);
    assert_eq!(c.groups[1].group_name, "group2");
    assert!(c.flv_support);
    // From the included http.conf, with the historic `enabed` spelling.
    assert!(c.http.check_token);
    assert_eq!(c.http.token_ttl, Duration::from_secs(900));
    assert_eq!(c.http.secret_key, "FastDFS1234567890");
    assert!(!c.http.multi_range_enabled);
    assert_eq!(c.http.mime_types_filename, Some(original("mime.types")));
}

#[test]
fn shipped_samples_parse() {
    let t = TrackerConfig::load(&shipped("tracker.conf")).unwrap();
    assert_eq!(t.port, 22122);
    let s = StorageConfig::load(&shipped("storage.conf")).unwrap();
    assert_eq!(s.store_paths.len(), 1);
    assert_eq!(s.tracker_servers[0].primary(), "127.0.0.1:22122");
    let c = ClientConfig::load(&shipped("client.conf")).unwrap();
    assert_eq!(c.tracker_servers.len(), 1);
    let m = ModFastdfsConfig::load(&shipped("mod_fastdfs.conf")).unwrap();
    assert_eq!(m.groups[0].group_name, "group1");
    assert!(m.http.multi_range_enabled);
    assert!(m.http.mime_types_filename.as_ref().unwrap().exists());
    let ids = StorageIds::load(&shipped("storage_ids.conf")).unwrap();
    assert_eq!(ids.entries[0].id, 100001);
}

#[test]
fn errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("storage.conf");
    std::fs::write(&p, "base_path=/tmp\nport = 23000\nsubdir_count_per_path = 300\n").unwrap();
    let e = StorageConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("storage.conf:3: subdir_count_per_path"), "{e}");
    std::fs::write(&p, "port = 23000\n").unwrap();
    let e = StorageConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("missing required key base_path"), "{e}");
    std::fs::write(&p, "base_path=/tmp\ntracker_server = nope\n").unwrap();
    let e = StorageConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains(":2: tracker_server"), "{e}");
    let m = dir.path().join("mod.conf");
    std::fs::write(&m, "group_name=g\nstore_path0=/x\nresponse_mode=Proxy\n").unwrap();
    let e = ModFastdfsConfig::load(&m).unwrap_err().to_string();
    assert!(e.contains(":3: response_mode"), "{e}");
}

#[test]
fn values_are_validated_once_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("storage.conf");
    // FastDFS reads a zero or negative timeout as its default; taken literally, every read
    // would time out at once.
    std::fs::write(&p, "base_path=/tmp\nnetwork_timeout = 0\nconnect_timeout = -1\n").unwrap();
    let c = StorageConfig::load(&p).unwrap();
    assert_eq!((c.network_timeout, c.connect_timeout), (Duration::from_secs(60), Duration::from_secs(10)));
    // allow_hosts is compiled here: a bad entry stops the start, naming its line.
    std::fs::write(&p, "base_path=/tmp\nallow_hosts = 10.0.0.0/8\nallow_hosts = 10.0.0.0/40\n").unwrap();
    let e = StorageConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("storage.conf:3: allow_hosts"), "{e}");
    let t = dir.path().join("tracker.conf");
    std::fs::write(&t, "base_path=/tmp\nallow_hosts = 127.0.0.[1-3]\n").unwrap();
    let c = TrackerConfig::load(&t).unwrap();
    assert!(c.allow_hosts.allows("127.0.0.2".parse().unwrap()) && !c.allow_hosts.allows("127.0.0.4".parse().unwrap()));
}

#[test]
fn keys_without_effect_are_warned_about_once_and_defaults_are_not() {
    // Our samples set every such key to its default: no warning.
    assert!(TrackerConfig::load(&shipped("tracker.conf")).unwrap().warnings.is_empty());
    assert!(StorageConfig::load(&shipped("storage.conf")).unwrap().warnings.is_empty());
    // The C 6.x sample turns one of them on.
    let w = TrackerConfig::load(&original("tracker.conf")).unwrap().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("use_connection_pool"), "{w:?}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("storage.conf");
    std::fs::write(&p, "base_path=/tmp\nuse_io_uring = true\nkeep_alive = 1\nnetwork_timeout = 0\n").unwrap();
    let w = StorageConfig::load(&p).unwrap().warnings;
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().any(|w| w.contains("storage.conf:3: keep_alive") && w.contains("FastDHT")), "{w:?}");
}
