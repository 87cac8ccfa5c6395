//! Hostile peers, full disks and slow clients (each a finding of an attack campaign): nothing
//! acknowledged is lost, and nothing a peer sends can stop a restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::{self, FileId, NameKind, NewName, Source};
use fdfs_core::protocol::report::JoinReq;
use fdfs_core::protocol::storage::{StreamedHead, UploadHead};
use fdfs_core::protocol::{Command, Header, Profile};
use fdfs_e2e::{client_for, eventually, raw_exchange, raw_request, Cluster, StorageProc, TrackerProc};

fn join(group: &str, domain: &str) -> JoinReq {
    JoinReq { domain_name: domain.into(), ..fdfs_e2e::storage_join(group, 23000, vec!["127.0.0.1:22122".into()]) }
}

#[tokio::test]
async fn text_from_the_network_cannot_break_a_restart() {
    let mut tracker = TrackerProc::start("");
    let t = tracker.addr();
    for evil in ["evil\n\tjoin_time=zzz", "x\n#include /etc/passwd", "a b"] {
        let (st, _) = raw_request(&t, 81, &join("group1", evil).encode(Profile::CLASSIC));
        assert_eq!(st, 22, "JOIN with domain {evil:?} is refused");
    }
    let mut bad_id = join("group1", "");
    bad_id.version = "6.16.1".into();
    bad_id.storage_id = "../../x".into();
    let (st, _) = raw_request(&t, 81, &bad_id.encode(Profile::V6_16));
    assert_eq!(st, 22, "a storage ID with a path in it is refused");
    // A clean JOIN is still welcome, and survives the restart.
    let mut s = TcpStream::connect(&t).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (st, _) = raw_exchange(&mut s, 81, &join("group1", "img.example.com").encode(Profile::CLASSIC));
    assert_eq!(st, 0);
    drop(s);
    tracker.restart();
    let groups = client_for(&tracker.addr()).tracker.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1, "the tracker restarted with its state");
}

#[tokio::test]
async fn joins_cannot_grow_the_cluster_without_bound() {
    let mut tracker = TrackerProc::start("max_groups = 8");
    let t = tracker.addr();
    let mut refused = 0;
    for i in 0..20 {
        let (st, _) = raw_request(&t, 81, &join(&format!("flood{i}"), "").encode(Profile::CLASSIC));
        match st {
            0 => {}
            28 => refused += 1,
            other => panic!("join {i}: status {other}"),
        }
    }
    assert_eq!(refused, 12, "groups past max_groups are refused with ENOSPC");
    let c = client_for(&t);
    assert_eq!(c.tracker.list_groups().await.unwrap().len(), 8);
    tracker.restart();
    let c = client_for(&tracker.addr());
    assert_eq!(c.tracker.list_groups().await.unwrap().len(), 8, "the same after a restart");
    let (st, _) = raw_request(&tracker.addr(), 81, &join("flood99", "").encode(Profile::CLASSIC));
    assert_eq!(st, 28, "and still enforced");
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let cl = Cluster::start("", &["127.0.0.2"], "max_connections_per_ip = 4").await;
    let addr = cl.storages[0].addr();
    let connect_from = |ip: &str| {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let addr = addr.parse().unwrap();
        async move { sock.connect(addr).await.unwrap().into_std().unwrap() }
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.9").await);
    }
    // The fifth from that address is closed at once, without an answer.
    let mut fifth = connect_from("127.0.0.9").await;
    fifth.set_nonblocking(false).unwrap();
    fifth.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    let r = fifth.read(&mut buf);
    assert!(matches!(r, Ok(0)), "closed by the server at once, not left waiting: {r:?}");
    // Another address is served.
    let mut other = connect_from("127.0.0.10").await;
    other.set_nonblocking(false).unwrap();
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (st, _) = raw_exchange(&mut other, Command::ActiveTest.into(), &[]);
    assert_eq!(st, 0);
    drop(held);
}

#[tokio::test]
async fn a_trickling_upload_is_cut_off_and_leaves_no_temp_file() {
    // Each read waits up to network_timeout (5 s); the body must come within 5 s plus its size
    // at min_body_rate.
    let cl = Cluster::start("", &["127.0.0.2"], "network_timeout = 5\nmin_body_rate = 1MB").await;
    let mut s = TcpStream::connect(cl.storages[0].addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let size = 1u64 << 20;
    let head = UploadHead { store_path_index: 0, file_size: size, ext: "bin".into() }.encode_head();
    let mut req = Header::request(Command::UploadFile, head.len() + size as usize).encode().to_vec();
    req.extend_from_slice(&head);
    s.write_all(&req).unwrap();
    let start = Instant::now();
    // One byte every two seconds: never idle for network_timeout, far below the rate.
    let closed = loop {
        std::thread::sleep(Duration::from_secs(2));
        if s.write_all(&[0]).is_err() {
            break start.elapsed();
        }
        let mut probe = [0u8; 16];
        s.set_nonblocking(true).unwrap();
        let r = s.read(&mut probe);
        s.set_nonblocking(false).unwrap();
        if r.is_ok() {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the slow upload was never cut off");
    };
    assert!(closed < Duration::from_secs(15), "cut off after {closed:?}");
    let tmp = cl.storages[0].base().join("data/.tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "temp files left in {}", tmp.display());
}

/// A small disk of its own: a tmpfs of the given size, unmounted (and its temp directory, if
/// it made one, removed) when dropped.
struct SmallDisk {
    at: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// Mounts it on a temp directory of its own (root only); `None`, with a message, where that
    /// is not allowed.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Self::mount_on(size, dir.path())?;
        disk._dir = Some(dir);
        Some(disk)
    }

    /// Mounts it on `at`, an existing directory.
    fn mount_on(size: &str, at: &std::path::Path) -> Option<SmallDisk> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)");
        }
        ok.then(|| SmallDisk { at: at.to_owned(), _dir: None })
    }

    fn path(&self) -> &std::path::Path {
        &self.at
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// "Error 28 but the disk has space" (#30): with a volume mounted on `store_path/data` (the
/// usual container layout), the space that counts is that volume's, not the root's: the
/// tracker is told its size, the storage refuses uploads once it is down to the reserve, and
/// the refusal says in the log which path and which numbers it was judged by.
#[tokio::test]
async fn a_volume_mounted_on_data_is_the_space_that_counts() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("data")).unwrap();
    let Some(_volume) = SmallDisk::mount_on("64m", &root.path().join("data")) else { return };
    let tracker = TrackerProc::start("reserved_storage_space = 32MB\n");
    let t = tracker.addr();
    let a = StorageProc::start(&t, "127.0.0.2", &format!("store_path0 = {}\n", root.path().display())).await;
    let c = client_for(&t);
    let listed = c.tracker.list_storages("group1", None).await.unwrap();
    assert_eq!(listed[0].total_mb, 64, "the volume on data/ is measured, not the root's disk");
    let data = vec![7u8; 1 << 20];
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..48 {
        match c.storage.upload(&a.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.to_string().contains("28"), "refused for space: {e}");
                refused += 1;
            }
        }
    }
    assert!((28..=33).contains(&accepted), "about 64 MB - 32 MB reserved taken: {accepted} accepted");
    assert_eq!(accepted + refused, 48);
    let data_dir = root.path().join("data");
    let log = eventually(Duration::from_secs(5), "the refusal in the log", || async {
        let log = std::fs::read_to_string(a.base().join("logs/storaged.log")).ok()?;
        log.contains("refused (ENOSPC)").then_some(log)
    })
    .await;
    let line = log.lines().find(|l| l.contains("refused (ENOSPC)")).unwrap();
    assert!(
        line.contains("reserved_storage_space = 32MB")
            && line.contains(&format!("M00 {}: ", data_dir.display()))
            && line.contains(" MB free of 64 MB"),
        "{line}"
    );
}

#[tokio::test]
async fn a_full_binlog_disk_refuses_uploads_and_loses_none() {
    let Some(small) = SmallDisk::mount("4m") else { return };
    // Storage A keeps its binlog on the small disk, its files on the big one; B replicates.
    let tracker = TrackerProc::start("");
    let t = tracker.addr();
    let port = fdfs_e2e::common_free_port(&["127.0.0.2", "127.0.0.3"]);
    let a =
        StorageProc::start(&t, "127.0.0.2", &format!("port = {port}\nbase_path = {}", small.path().display())).await;
    let b = StorageProc::start(&t, "127.0.0.3", &format!("port = {port}")).await;
    let c = client_for(&t);
    // Fill the small disk.
    let filler = small.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&chunk[..64]).is_ok() {}
    drop(f);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..60u32 {
        let data = i.to_be_bytes().repeat(1000);
        match c.storage.upload(&a.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await {
            Ok(r) => acked.push((r.file_id(), data)),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "with no room for the binlog, uploads must fail");
    // Room again: uploads succeed and everything acknowledged reaches B.
    std::fs::remove_file(&filler).unwrap();
    for i in 100..110u32 {
        let data = i.to_be_bytes().repeat(1000);
        let r = c.storage.upload(&a.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
        acked.push((r.file_id(), data));
    }
    for (id, data) in &acked {
        let fid = FileId::parse(id).unwrap();
        let name = fid.remote.to_string();
        eventually(Duration::from_secs(30), &format!("{id} on B"), || {
            let (c, b, name, fid) = (&c, b.addr(), name.clone(), &fid);
            async move {
                let got = c.storage.download(&b, &fid.group, &name, 0, 0).await.ok()?;
                (got[..] == data[..]).then_some(())
            }
        })
        .await;
    }
    // And A's store holds no file its binlog does not name.
    let binlog = std::fs::read_to_string(small.path().join("data/sync/binlog.000")).unwrap();
    let stored = walk(&a.base().join("data"));
    for f in stored {
        assert!(binlog.contains(&f), "{f} is stored on A but not in its binlog");
    }
}

/// Every data file under `data/HH/LL`, as `M00/HH/LL/name`.
fn walk(data: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for hi in std::fs::read_dir(data).unwrap().flatten() {
        let hn = hi.file_name().to_string_lossy().into_owned();
        if hn.len() != 2 {
            continue;
        }
        for lo in std::fs::read_dir(hi.path()).unwrap().flatten() {
            let ln = lo.file_name().to_string_lossy().into_owned();
            for f in std::fs::read_dir(lo.path()).unwrap().flatten() {
                out.push(format!("M00/{hn}/{ln}/{}", f.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_file_published_just_before_a_crash_still_reaches_the_peer() {
    let mut cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(b"before")).await.unwrap();
    let t = cl.tracker.addr();
    cl.storages[0].daemon.kill9();
    // The state kill -9 can leave: the file renamed into place, its record never written.
    let data = b"published, then the process died".to_vec();
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
    let name = file_id::generate(
        &NewName {
            source: Source::Ip("127.0.0.2".parse().unwrap()),
            timestamp: ts,
            size: data.len() as u64,
            crc32: crc32fast::hash(&data),
            kind: NameKind::Normal,
            ext: "bin",
            store_path_index: 0,
            high: 0,
            low: 1,
        },
        &mut fastrand::Rng::new(),
    );
    let path = cl.storages[0].base().join(name.relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &data).unwrap();
    // Something else dropped into the same directory is not a FastDFS file: left alone.
    std::fs::write(path.with_file_name("stray copy.txt"), b"x").unwrap();
    cl.storages[0].restart(&t, false).await;
    let b = cl.storages[1].addr();
    let remote = name.to_string();
    eventually(Duration::from_secs(30), "the unrecorded file on B", || {
        let (c, b, remote, data) = (&c, b.clone(), remote.clone(), &data);
        async move {
            let got = c.storage.download(&b, "group1", &remote, 0, 0).await.ok()?;
            (got[..] == data[..]).then_some(())
        }
    })
    .await;
    let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    assert!(binlog.contains(&remote), "recorded on A");
    assert!(!binlog.contains("stray"), "{binlog}");
}

#[tokio::test]
async fn a_full_store_path_answers_enospc_not_a_reset() {
    let Some(small) = SmallDisk::mount("8m") else { return };
    let tracker = TrackerProc::start("");
    let t = tracker.addr();
    let a = StorageProc::start(&t, "127.0.0.2", &format!("store_path0 = {}", small.path().display())).await;
    let c = client_for(&t);
    let big = vec![7u8; 16 << 20];
    for _ in 0..3 {
        let r = c.storage.upload(&a.addr(), UploadKind::Normal, 0, "bin", Content::Bytes(&big)).await;
        let e = r.expect_err("16 MiB cannot fit on an 8 MiB disk");
        assert_eq!(e.status(), fdfs_core::protocol::Status::ENOSPC, "{e}");
    }
    // Nothing half-written stays behind, and small files still fit.
    let tmp_files = std::fs::read_dir(small.path().join("data/.tmp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(tmp_files, 0);
    c.storage.upload(&a.addr(), UploadKind::Normal, 0, "bin", Content::Bytes(b"small")).await.unwrap();
}

/// A stalled upload holds at most its two 32 KiB buffers, whatever size it declared: 100
/// clients (below the per-host connection limit) that announce 1 MiB, send 900 KiB and stop
/// cost the storage a few MiB, not 90 MiB (before the streamed write path, content up to 1 MiB
/// was buffered whole).
#[tokio::test]
async fn stalled_large_uploads_hold_bounded_memory() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let addr = cl.storages[0].addr();
    let daemon = &cl.storages[0].daemon;
    let before = daemon.rss_kib();
    let size = 1u64 << 20;
    let sent = vec![5u8; 900 << 10];
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&Header::request(Command::UploadFile, 15 + size as usize).encode()).unwrap();
        s.write_all(&UploadHead { store_path_index: 0, file_size: size, ext: "bin".into() }.encode_head()).unwrap();
        s.write_all(&sent).unwrap();
        stalled.push(s);
    }
    // Every upload has read what was sent once the storage's temp files hold it all.
    let tmp = cl.storages[0].base().join("data/.tmp");
    eventually(Duration::from_secs(20), "the stalled uploads' bytes on disk", || {
        let tmp = tmp.clone();
        async move {
            let on_disk: u64 =
                std::fs::read_dir(&tmp).ok()?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
            (on_disk >= 100 * (896 << 10)).then_some(())
        }
    })
    .await;
    let grown = daemon.rss_kib().saturating_sub(before);
    assert!(grown < 30 << 10, "100 stalled uploads grew the storage by {grown} KiB");
    drop(stalled);
    let c = cl.client();
    let id = c.upload_buffer(b"still serving", "txt").await.unwrap();
    assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], b"still serving");
}
