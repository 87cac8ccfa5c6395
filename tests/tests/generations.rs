//! Every FastDFS generation on the wire (PROTOCOL.md §0.2): storages of each generation in one
//! group under our tracker, our storage finding an older tracker's generation by itself, the
//! client-facing layouts `client_protocol_version` and `response_ip_addr_size` select, a
//! captured 6.16 JOIN answered in its own layout, and the 6.16 cluster-stat tools.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::report::{JoinReq, JoinResp};
use fdfs_core::protocol::{Command, Header, Layout, Profile, HEADER_LEN};
use fdfs_e2e::{
    client_for, common_free_port, eventually, raw_exchange, raw_request, Cluster, StorageProc, TrackerProc,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn storages_of_every_generation_share_one_group() {
    let tracker = TrackerProc::start("");
    let t = tracker.addr();
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"];
    let port = common_free_port(&ips);
    let mut storages = Vec::new();
    for (ip, layout) in ips.iter().zip(Layout::ALL) {
        let conf = format!("port = {port}\ntracker_protocol_version = {}\n", layout.name());
        storages.push(StorageProc::start(&t, ip, &conf).await);
    }
    let c = client_for(&t);
    // Each storage's JOIN was read in its own layout: the version text sits at a different
    // offset in every generation.
    let listed = c.tracker.list_storages("group1", None).await.unwrap();
    for (ip, layout) in ips.iter().zip(Layout::ALL) {
        let s = listed.iter().find(|s| s.ip == *ip).unwrap_or_else(|| panic!("{ip} not listed"));
        assert_eq!(s.version, layout.version_text(), "{ip} joined as {layout}");
        // GET_STATUS on a short connection is answered with a brief of its generation.
        let mut req = b"group1".to_vec();
        req.resize(16, 0);
        req.extend_from_slice(ip.as_bytes());
        let (st, brief) = raw_request(&t, 71, &req);
        assert_eq!((st, brief.len()), (0, Profile::of(layout, false).brief_len()), "{ip}: GET_STATUS as {layout}");
    }
    // A file uploaded to any of them reaches every other one: the group's briefs reach each
    // storage in its own generation's width.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let id = c.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await.unwrap();
    let fid = FileId::parse(&id).unwrap();
    for s in &storages {
        let addr = s.addr();
        eventually(Duration::from_secs(20), &format!("{id} on {addr}"), || {
            let (c, addr, fid, data) = (&c, addr.clone(), &fid, &data);
            async move {
                let got = c.storage.download(&addr, &fid.group, &fid.remote.to_string(), 0, 0).await.ok()?;
                (got[..] == data[..]).then_some(())
            }
        })
        .await;
    }
}

/// Plays a C tracker of one generation that knows no other: GET_MY_IP only in its own form,
/// JOIN only in its own layout (EINVAL and close otherwise, as C does), minimal answers to the
/// rest. Records the generation of every JOIN it receives.
async fn old_tracker(listener: tokio::net::TcpListener, layout: Layout, joins: Arc<Mutex<Vec<Option<Layout>>>>) {
    loop {
        let Ok((mut s, peer)) = listener.accept().await else { return };
        let joins = joins.clone();
        tokio::spawn(async move {
            loop {
                let mut raw = [0u8; HEADER_LEN];
                if s.read_exact(&mut raw).await.is_err() {
                    return;
                }
                let h = Header::decode(&raw, 1 << 20).unwrap();
                let mut body = vec![0u8; h.pkg_len as usize];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                let my_ip_len = if layout == Layout::V616 { 21 } else { 16 };
                let mut hang_up = false;
                let answer: Result<Vec<u8>, u8> = match Command::try_from(h.cmd) {
                    Ok(Command::StorageParameterReq) => Ok(b"use_storage_id=0\nstore_path=0\n".to_vec()),
                    Ok(Command::StorageGetMyIp) if body.len() == my_ip_len => Ok(peer.ip().to_string().into_bytes()),
                    Ok(Command::StorageGetMyIp) => Err(22),
                    Ok(Command::StorageJoin) => {
                        let seen = JoinReq::detect(&body);
                        joins.lock().unwrap().push(seen);
                        let accepts = |l: &Option<Layout>| {
                            l.is_some_and(|l| l == layout || (l >= Layout::V615 && layout >= Layout::V615))
                        };
                        if accepts(&seen) {
                            // After its first accepted JOIN the storage is hung up on once: it must
                            // come back in the generation it learnt, without probing again.
                            hang_up = joins.lock().unwrap().iter().filter(|l| accepts(l)).count() == 1;
                            Ok(JoinResp { status: fdfs_core::protocol::status::ONLINE, sync_src_id: String::new() }
                                .encode(Profile::of(layout, false))
                                .to_vec())
                        } else {
                            Err(22)
                        }
                    }
                    Ok(Command::StorageBeat | Command::StorageReportDiskUsage | Command::StorageSyncReport) => {
                        Ok(vec![0])
                    }
                    _ => Ok(Vec::new()),
                };
                let (status, b) = match answer {
                    Ok(b) => (0, b),
                    Err(e) => (e, Vec::new()),
                };
                let mut out = Header::response(fdfs_core::protocol::Status(status), b.len()).encode().to_vec();
                out.extend_from_slice(&b);
                if s.write_all(&out).await.is_err() || status == 22 || hang_up {
                    return;
                }
            }
        });
    }
}

#[tokio::test]
async fn our_storage_finds_an_older_trackers_generation_by_itself() {
    for layout in [Layout::Classic, Layout::V613] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let joins = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(old_tracker(listener, layout, joins.clone()));
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("storage");
        std::fs::create_dir_all(&base).unwrap();
        let conf = dir.path().join("storage.conf");
        std::fs::write(
            &conf,
            format!(
                "group_name = group1\nbind_addr = 127.0.0.2\nport = 0\nbase_path = {b}\nstore_path0 = {b}\n\
                 subdir_count_per_path = 2\ntracker_server = {addr}\nheart_beat_interval = 1\n",
                b = base.display()
            ),
        )
        .unwrap();
        let _storage = fdfs_e2e::Daemon::start("fdfs_storaged", &conf, &base);
        let seen = eventually(Duration::from_secs(20), "two JOINs in the tracker's generation", || {
            let joins = joins.clone();
            async move {
                let j = joins.lock().unwrap().clone();
                (j.iter().filter(|l| **l == Some(layout)).count() >= 2).then_some(j)
            }
        })
        .await;
        // Newest first, each refused generation tried once, then the tracker's own.
        let first_ok = seen.iter().position(|l| *l == Some(layout)).unwrap();
        let tried: Vec<Layout> = seen[..first_ok].iter().map(|l| l.unwrap()).collect();
        assert!(tried.iter().all(|l| *l > layout), "{layout}: tried {tried:?} first");
        assert!(tried.windows(2).all(|w| w[0] > w[1]), "{layout}: newest first: {tried:?}");
        // The generation is remembered: the JOIN after the hang-up goes straight to it.
        assert_eq!(seen[first_ok + 1], Some(layout), "{layout}: {seen:?}");
        server.abort();
    }
}

#[tokio::test]
async fn client_answers_follow_the_configured_generation() {
    // Record sizes per generation (PROTOCOL.md §11): group stat, storage stat, query-store
    // answer, fetch-all answer with two storages, and the storage's file-info answer.
    let cases: [(&str, usize, usize, usize, usize, usize); 4] = [
        ("client_protocol_version = classic", 105, 612, 40, 16 + 15 + 8 + 15, 40),
        ("", 113, 487, 40, 16 + 2 * (15 + 8), 40),
        ("response_ip_addr_size = IPv6", 113, 517, 70, 16 + 2 * (45 + 8), 70),
        ("client_protocol_version = 6.12", 105, 644, 70, 16 + 45 + 8 + 45, 70),
    ];
    for (conf, group_len, storage_len, store_len, fetch_all_len, file_info_len) in cases {
        let cl = Cluster::start(conf, &["127.0.0.2", "127.0.0.3"], "").await;
        let t = cl.tracker.addr();
        let (st, groups) = raw_request(&t, 91, &[]);
        assert_eq!((st, groups.len()), (0, group_len), "{conf:?}: LIST_GROUPS");
        let mut group = [0u8; 16];
        group[..6].copy_from_slice(b"group1");
        let (st, storages) = raw_request(&t, 92, &group);
        assert_eq!((st, storages.len()), (0, 2 * storage_len), "{conf:?}: LIST_STORAGE");
        let (st, store) = raw_request(&t, 101, &[]);
        assert_eq!((st, store.len()), (0, store_len), "{conf:?}: QUERY_STORE");
        let c = cl.client();
        let id = c.upload(UploadKind::Normal, None, "txt", Content::Bytes(b"generations")).await.unwrap();
        let fid = FileId::parse(&id).unwrap();
        let mut req = group.to_vec();
        req.extend_from_slice(fid.remote.to_string().as_bytes());
        // The tracker counts a member as holding the file once it applied a newer record from
        // the file's source (PROTOCOL.md §7.3): later uploads provide those records.
        let (st, all) = eventually(Duration::from_secs(20), "both storages hold the file", || {
            let r = raw_request(&t, 105, &req);
            let c = &c;
            async move {
                if r.0 == 0 && r.1.len() == fetch_all_len {
                    return Some(r);
                }
                c.upload(UploadKind::Normal, None, "txt", Content::Bytes(b"later")).await.unwrap();
                None
            }
        })
        .await;
        assert_eq!((st, all.len()), (0, fetch_all_len), "{conf:?}: QUERY_FETCH_ALL");
        // The storages learn the width from the tracker's parameters at their next report.
        let storage = cl.storages[0].addr();
        let (st, info) = eventually(Duration::from_secs(10), "file info in the configured width", || {
            let r = raw_request(&storage, 22, &req);
            async move { (r.1.len() == file_info_len).then_some(r) }
        })
        .await;
        assert_eq!((st, info.len()), (0, file_info_len), "{conf:?}: QUERY_FILE_INFO");
    }
}

#[tokio::test]
async fn a_captured_6_16_join_is_answered_in_its_own_layout() {
    let tracker = TrackerProc::start("");
    let text =
        std::fs::read_to_string(fdfs_e2e::test_data_dir().join("captures/fastdfs-6.16.1-cluster.jsonl")).unwrap();
    let join_hex = text
        .lines()
        .find(|l| l.contains("\"cmd\":81,") && l.contains("\"from\":\"storage\""))
        .and_then(|l| l.split("\"body_hex\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("a captured JOIN");
    let body: Vec<u8> =
        (0..join_hex.len()).step_by(2).map(|i| u8::from_str_radix(&join_hex[i..i + 2], 16).unwrap()).collect();
    assert_eq!(JoinReq::detect(&body), Some(Layout::V616));
    let mut s = std::net::TcpStream::connect(tracker.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (st, resp) = raw_exchange(&mut s, 81, &body);
    assert_eq!((st, resp.len()), (0, 17), "JOIN answer");
    // The first beat answer names the leader and the group in 67-byte (6.16) briefs.
    let (st, notify) = raw_exchange(&mut s, 83, &[]);
    assert_eq!(st, 0);
    assert_eq!(notify[0] & 0x05, 0x05, "leader and group flags");
    assert_eq!((notify.len() - 1) % 67, 0, "briefs of 67 bytes: {} bytes", notify.len());
    assert_eq!(notify.len(), 1 + 2 * 67, "the leader and the one storage");
}

#[tokio::test]
async fn cluster_stat_commands_and_tools() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let conf = cl.client_conf.display().to_string();
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(fdfs_e2e::bin(tool)).args(["-c", &conf]).args(args).output().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let t = run("fdfs_tracker_stat", &["-d"]);
    let me = cl.tracker.addr();
    assert!(t.contains(&format!("{me}, is_leader: 1, is_active: 1, connections {{alloc: 256, current: ")), "{t}");
    assert!(t.contains("  version: 6.16.1, up_time: "), "{t}");
    assert!(t.ends_with("\ntracker server count: 1\n\n"), "{t}");
    assert_eq!(run("fdfs_tracker_stat", &["-F"]), "", "no follower");

    let s = run("fdfs_storage_stat", &["-A", "-d"]);
    let port = cl.storages[0].daemon.addr.port();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        assert!(s.contains(&format!("\n{ip}:{port} ACTIVE, connections {{alloc: ")), "{s}");
    }
    assert!(s.contains("last_heartbeat_time: "), "{s}");
    assert!(s.ends_with("\nstorage server count: 2\n\n"), "{s}");
    assert_eq!(run("fdfs_storage_stat", &["-N"]), "", "every storage is ACTIVE");

    let v = run("fdfs_volumn_stat", &[]);
    assert!(v.starts_with("\ngroup1 disk_available: 1, disk space {total: "), "{v}");
    assert!(v.ends_with("storage volumn / group count: 1\n\n"), "{v}");
    assert_eq!(run("fdfs_volumn_stat", &["-d"]), "", "no group without disk space");

    // The raw answers decode with the 6.16 layouts and agree with the cluster.
    let (st, b) = raw_request(&cl.tracker.addr(), 97, &[0, 0, 0, 0]);
    let stats = fdfs_core::protocol::tracker::StorageClusterStats::decode(&b).unwrap();
    assert_eq!((st, stats.storages.len(), stats.use_storage_id), (0, 2, false));
    let (st, _) = raw_request(&cl.tracker.addr(), 96, &[0, 0]);
    assert_eq!(st, 22, "a 96 request of the wrong length is EINVAL");
}
