//! A storage that comes back on a new address (`storage_ip_changed_auto_adjust`, IP mode):
//! it tells the trackers (78), keeps its identity and data, the tracker moves its record (the
//! old address stays as IP_CHANGED, no second node), and its peer renames its mark file from
//! the changelog (77) and continues where it was instead of replaying its binlog.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::FileId;
use fdfs_e2e::{eventually, Cluster};

fn mark_offset(path: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix("binlog_offset=")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_storage_on_a_new_address_keeps_its_identity_and_its_peers_continue() {
    let mut cl = Cluster::start("", &["127.0.0.55", "127.0.0.56"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let port = cl.storages[1].daemon.addr.port();
    let mut ids = Vec::new();
    for (i, to) in [&a, &b, &a, &b].into_iter().enumerate() {
        let data = format!("file {i} before the move").into_bytes();
        let r = c.storage.upload(to, UploadKind::Normal, -1, "txt", Content::Bytes(&data)).await.unwrap();
        ids.push((r.file_id(), data));
    }
    let a_base = cl.storages[0].base();
    let old_mark = a_base.join(format!("data/sync/127.0.0.56_{port}.mark"));
    for (id, data) in &ids {
        let name = FileId::parse(id).unwrap().remote.to_string();
        for addr in [&a, &b] {
            eventually(Duration::from_secs(20), "replicated", || async {
                (c.storage.download(addr, "group1", &name, 0, 0).await.ok()? == *data).then_some(())
            })
            .await;
        }
    }
    let before = eventually(Duration::from_secs(20), "A's mark for B saved", || async {
        mark_offset(&old_mark).filter(|&o| o > 0)
    })
    .await;

    // B comes back as 127.0.0.57 with the same data.
    let tracker = cl.tracker.addr();
    {
        let s = &mut cl.storages[1];
        s.daemon.stop();
        let conf = std::fs::read_to_string(&s.daemon.conf)
            .unwrap()
            .replace("bind_addr = 127.0.0.56", "bind_addr = 127.0.0.57");
        std::fs::write(&s.daemon.conf, conf).unwrap();
        s.ip = "127.0.0.57".into();
        s.id = "127.0.0.57".into();
        s.restart(&tracker, false).await;
    }
    let c = cl.client();
    let list = c.tracker.list_storages("group1", None).await.unwrap();
    let status_of = |ip: &str| list.iter().find(|s| s.id == ip).map(|s| s.status);
    assert_eq!(status_of("127.0.0.57"), Some(fdfs_core::tracker::status::ACTIVE));
    assert_eq!(status_of("127.0.0.56"), Some(fdfs_core::tracker::status::IP_CHANGED), "{list:?}");
    assert_eq!(list.len(), 3, "no second node for B: A, B, and B's old address");
    let new_mark = a_base.join(format!("data/sync/127.0.0.57_{port}.mark"));
    eventually(Duration::from_secs(20), "A's mark renamed for B's new address", || async {
        (mark_offset(&new_mark)? >= before).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(a_base.join("logs/storaged.log")).unwrap();
    assert!(!log.contains("sync to 127.0.0.57: new mark"), "A continued from its mark: {log}");
    let b_flag = std::fs::read_to_string(cl.storages[1].base().join("data/.data_init_flag")).unwrap();
    assert!(b_flag.contains("last_ip_addr=127.0.0.57\n"), "{b_flag}");

    // Both directions work on the new address; files named after the old one stay readable.
    let b = cl.storages[1].addr();
    let ra = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"to the new b")).await.unwrap();
    let rb = c.storage.upload(&b, UploadKind::Normal, -1, "txt", Content::Bytes(b"from the new b")).await.unwrap();
    for (name, data, on) in [(&ra.filename, &b"to the new b"[..], &b), (&rb.filename, &b"from the new b"[..], &a)] {
        eventually(Duration::from_secs(20), "replicated after the move", || async {
            (c.storage.download(on, "group1", name, 0, 0).await.ok()? == data).then_some(())
        })
        .await;
    }
    for (id, data) in &ids {
        assert_eq!(c.download(id, 0, 0).await.unwrap(), data[..], "{id} through the tracker");
    }
}

/// A C 6.16.1 storage that comes back on a new address, against our tracker: its captured
/// requests (A9: 78 REPORT_IP_CHANGED from the new address, 77 for the changelog, then 81
/// JOIN) get the answers the C tracker gave, and the record moves (old address IP_CHANGED).
#[tokio::test]
async fn a_c_storage_on_a_new_address_is_taken_over_by_our_tracker() {
    use fdfs_e2e::capture::{connect_from, packets};
    // The old storage, 127.0.0.23:23000 as in the capture, known to the tracker, then gone.
    let tracker = fdfs_e2e::TrackerProc::start("");
    let t = tracker.addr();
    let mut old = fdfs_e2e::StorageProc::start(&t, "127.0.0.23", "port = 23000\nsubdir_count_per_path = 256\n").await;
    old.daemon.stop();
    let c = fdfs_e2e::client_for(&t);
    let prefix = "A9_ip_change_s2_to_new_ip_storage_127.0.0.24_to_tracker_127.0.0.20_";
    let file = "fastdfs-6.16.1-cluster.jsonl";
    for exchange in ["78+82", "77+82", "report"] {
        let requests = packets(file, &format!("{prefix}{exchange}"), "storage");
        let answers = packets(file, &format!("{prefix}{exchange}"), "tracker");
        let mut s = connect_from("127.0.0.24", &t);
        // The first request of each connection (QUIT and the report loop's rest not replayed).
        let (req, want) = (&requests[0], &answers[0]);
        let (status, body) = fdfs_e2e::raw_exchange(&mut s, req.cmd, &req.body);
        assert_eq!(status, want.status, "{exchange}: command {}", req.cmd);
        assert_eq!(body.len(), want.body.len(), "{exchange}: command {} answer length", req.cmd);
        if req.cmd == 77 {
            let text = String::from_utf8_lossy(&body);
            assert!(text.ends_with(" group1 127.0.0.23 3 127.0.0.24\n"), "the changelog line, as C's: {text}");
        }
    }
    let list = c.tracker.list_storages("group1", None).await.unwrap();
    assert!(list.iter().any(|s| s.id == "127.0.0.24"), "the new address has the record: {list:?}");
    assert!(
        list.iter().any(|s| s.id == "127.0.0.23" && s.status == fdfs_core::tracker::status::IP_CHANGED),
        "the old one is kept as IP_CHANGED: {list:?}"
    );
}
