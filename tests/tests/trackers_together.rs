//! A tracker added to a running cluster copies the cluster state from the tracker that has it
//! (61, 63 × 4, 62) at the first JOIN it receives, so it knows every group, storage and sync
//! position at once, even members that have not reached it yet.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_e2e::{client_for, eventually, Cluster, TrackerProc};

#[tokio::test]
async fn a_late_tracker_copies_the_cluster_state_and_answers_at_once() {
    let mut cl = Cluster::start("", &["127.0.0.58", "127.0.0.59"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let r = c
        .storage
        .upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"before the second tracker"))
        .await
        .unwrap();
    let t1 = cl.tracker.addr();
    let t2 = TrackerProc::start("");
    let t2a = t2.addr();
    // Only A learns of the second tracker; B keeps reporting to the first alone.
    {
        let s = &mut cl.storages[0];
        let conf = std::fs::read_to_string(&s.daemon.conf).unwrap();
        std::fs::write(&s.daemon.conf, format!("{conf}tracker_server = {t2a}\n")).unwrap();
        s.restart(&t1, false).await;
    }
    let c2 = client_for(&t2a);
    let storages = eventually(Duration::from_secs(20), "the second tracker knows the group", || async {
        let list = c2.tracker.list_storages("group1", None).await.ok()?;
        (list.len() == 2).then_some(list)
    })
    .await;
    let ids: Vec<&str> = storages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["127.0.0.58", "127.0.0.59"], "B, which never reported to it, is known too");
    let log = std::fs::read_to_string(t2.daemon.base_path.join("logs/trackerd.log")).unwrap();
    assert!(log.contains("copied the cluster state from tracker"), "{log}");
    assert!(t2.daemon.base_path.join("data/storage_servers_new.dat").exists(), "kept as its own state");
    // It routes reads and writes for the group.
    eventually(Duration::from_secs(20), "uploads through the second tracker", || async {
        c2.tracker.query_store(Some("group1")).await.ok().map(drop)
    })
    .await;
    let got = eventually(Duration::from_secs(20), "a download through the second tracker", || async {
        c2.download(&r.file_id(), 0, 0).await.ok()
    })
    .await;
    assert_eq!(&got[..], b"before the second tracker");
}

/// The captured C exchange (A6: 61, then 63 for each file index at offset 0, then 62) gets
/// answers of its shape: an empty 61, `size (8 bytes) + content` for each file, an empty 62.
#[tokio::test]
async fn captured_state_copy_requests_get_the_captured_shape() {
    use std::io::Write;
    let cl = Cluster::start("", &["127.0.0.60"], "").await;
    let t = cl.tracker.addr();
    let mut s = std::net::TcpStream::connect(&t).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(fdfs_e2e::raw_exchange(&mut s, 61, &[]), (0, Vec::new()));
    let mut sizes = Vec::new();
    for index in 0u8..4 {
        let mut req = vec![index];
        req.extend_from_slice(&0i64.to_be_bytes());
        let (st, body) = fdfs_e2e::raw_exchange(&mut s, 63, &req);
        assert_eq!(st, 0);
        let size = i64::from_be_bytes(body[..8].try_into().unwrap()) as usize;
        assert_eq!(body.len() - 8, size.min(8192), "file {index}");
        sizes.push(size);
        if index == 0 {
            assert!(body[8..].starts_with(b"[Global]\n\tgroup_count=1\n"), "{}", String::from_utf8_lossy(&body[8..]));
        }
        if index == 1 {
            assert!(String::from_utf8_lossy(&body[8..]).contains("ip_addr=127.0.0.60"));
        }
    }
    assert_eq!(fdfs_e2e::raw_exchange(&mut s, 62, &[]), (0, Vec::new()));
    s.flush().unwrap();
    // Without 61 first, 63 is refused.
    let mut fresh = std::net::TcpStream::connect(&t).unwrap();
    fresh.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (st, _) = fdfs_e2e::raw_exchange(&mut fresh, 63, &[0; 9]);
    assert_eq!(st, fdfs_core::protocol::Status::EINVAL.0);
    assert!(sizes[0] > 0 && sizes[1] > 0);
}
