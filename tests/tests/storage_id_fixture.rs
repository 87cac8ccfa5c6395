//! Storage IDs written by C: our tracker (with the C setup's storage_ids.conf) and our storage
//! take over the store path of C 6.16.1 storage `100001` (`id_type_in_filename = id`,
//! `shared/fixtures/c-6.16.1-storage-id.tar.gz`). The storage learns its ID and the ID table
//! from the tracker, serves every file of the manifest (names embedding either storage's ID,
//! QUERY_FILE_INFO mapping each ID to its address), keeps naming new files with its ID, and
//! resumes replication to `100002` from the mark file C named after that ID.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::{FileId, Source};
use fdfs_e2e::fixture::{check_row, manifest, unpack};
use fdfs_e2e::{client_for, eventually, Daemon, TrackerProc};

#[tokio::test]
async fn a_c_storage_id_store_path_is_served_and_extended() {
    let ids = tempfile::tempdir().unwrap();
    let table = ids.path().join("storage_ids.conf");
    std::fs::write(&table, "100001  group1  127.0.0.26\n100002  group1  127.0.0.27\n").unwrap();
    let tracker = TrackerProc::start(&format!(
        "use_storage_id = true\nstorage_ids_filename = {}\nid_type_in_filename = id\ntrust_storage_server_id = false\n",
        table.display()
    ));
    let t = tracker.addr();
    let fx = unpack("c-6.16.1-storage-id", "127.0.0.26", &t);
    let rows = manifest(&fx.root);
    let mark_before = std::fs::read_to_string(fx.root.join("base_path/data/sync/100002.mark")).unwrap();
    let mut storage = Daemon::start("fdfs_storaged", &fx.conf, &fx.root.join("base_path"));
    let c = client_for(&t);
    // The storage learns that IDs are in use, its ID and the ID table from the tracker before
    // it joins; until then it serves its files but cannot map IDs to addresses.
    eventually(Duration::from_secs(30), "the storage joined the tracker", || async {
        c.tracker.list_storages("group1", Some("100001")).await.ok().filter(|l| !l.is_empty()).map(drop)
    })
    .await;
    // Names embed 100001 (this storage) and 100002 (replicated from the other member).
    let mut by_source = std::collections::HashMap::new();
    for r in &rows {
        check_row(&c, &fx.addr, r).await;
        if r.kind == "deleted" {
            continue;
        }
        let Source::ServerId(id) = FileId::parse(&r.file_id).unwrap().remote.info().source else {
            panic!("{}: an ID-mode name", r.file_id)
        };
        let info = c.storage.file_info(&fx.addr, "group1", &r.remote(), 1).await.unwrap();
        let want = if id == 100001 { "127.0.0.26" } else { "127.0.0.27" };
        assert_eq!(info.source_ip, want, "{}: storage {id} mapped through the ID table", r.file_id);
        *by_source.entry(id).or_insert(0) += 1;
    }
    assert!(by_source.len() == 2, "names of both storages were read: {by_source:?}");

    // New files keep the storage's ID in their names.
    let data = b"uploaded after the takeover".to_vec();
    let r = c.storage.upload(&fx.addr, UploadKind::Normal, -1, "txt", Content::Bytes(&data)).await.unwrap();
    assert_eq!(FileId::parse(&r.file_id()).unwrap().remote.info().source, Source::ServerId(100001));
    assert_eq!(&c.storage.download(&fx.addr, "group1", &r.filename, 0, 0).await.unwrap()[..], &data[..]);
    // The sync position towards 100002 is C's `100002.mark` (untouched until 100002 returns),
    // not a new `ip_port` mark that would replay the whole binlog.
    storage.stop();
    let sync = std::fs::read_dir(fx.root.join("base_path/data/sync")).unwrap();
    let marks: Vec<String> =
        sync.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".mark")).collect();
    assert_eq!(marks, ["100002.mark"], "no second mark file for the same peer");
    let mark_after = std::fs::read_to_string(fx.root.join("base_path/data/sync/100002.mark")).unwrap();
    let offset = |m: &str| m.lines().find_map(|l| l.strip_prefix("binlog_offset=")).map(str::to_owned);
    assert_eq!(offset(&mark_after), offset(&mark_before), "the position C left is kept");
}
