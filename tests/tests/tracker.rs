//! fdfs_trackerd as a real process: storages (played through fdfs-core's report client from
//! their own 127.0.0.x addresses) join and beat; clients query; the daemon restarts, refuses
//! bad input and serves a third-party client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fdfs_core::client::reporter::{report_status, ReportConnection};
use fdfs_core::client::{Client, ClientError};
use fdfs_core::config::{ClientConfig, ServerAddr};
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::report::{Brief, JoinReq, PathUsage, SyncSource, SyncTimestamp};
use fdfs_core::protocol::{Profile, Status};
use fdfs_core::tracker::status;
use fdfs_e2e::{eventually, TrackerProc};

const T: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(10));

fn join_req(group: &str, paths: i64) -> JoinReq {
    JoinReq {
        group: group.into(),
        storage_port: 23000,
        storage_http_port: 8888,
        store_path_count: paths,
        subdir_count_per_path: 256,
        upload_priority: 10,
        join_time: 0,
        up_time: 1,
        version: "6.08".into(),
        init_flag: true,
        status: 0,
        current_tracker_ip: "127.0.0.1".into(),
        trackers: vec!["127.0.0.1:22122".into()],
        ..Default::default()
    }
}

/// Joins from `ip` and, as a new storage, asks for its sync source.
async fn storage(tracker: &str, ip: &str, group: &str) -> (ReportConnection, Option<SyncSource>) {
    let mut c = ReportConnection::connect(tracker, Some(ip.parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
    let r = c.join(&join_req(group, 1)).await.unwrap();
    assert_eq!(r.status, status::INIT);
    let src = c.sync_dest_req().await.unwrap();
    (c, src)
}

fn client(tracker: &str) -> Client {
    Client::new(&ClientConfig::for_tracker(ServerAddr::parse(tracker).unwrap()))
}

async fn status_of(c: &Client, group: &str, id: &str) -> fdfs_core::protocol::StorageStatus {
    c.tracker.list_storages(group, Some(id)).await.unwrap()[0].status
}

fn file_from(ip: &str, ts: i64) -> FileId {
    use fdfs_core::file_id::*;
    let core =
        NameCore { source: Source::Ip(ip.parse().unwrap()), timestamp: ts as u32, size_field: 1 << 63 | 9, crc32: 7 };
    FileId::parse(&format!("group1/M00/00/00/{}123.txt", core.to_b64())).unwrap()
}

const USAGE: [PathUsage; 1] = [PathUsage { total_mb: 100_000, free_mb: 50_000 }];

#[tokio::test]
async fn storages_join_sync_and_serve_every_query() {
    let t = TrackerProc::start("store_lookup = 0\nstore_server = 0\n");
    let addr = t.addr();
    let c = client(&addr);

    // The first storage of a group has no one to copy from: ONLINE, then ACTIVE on a beat.
    let (mut a, src) = storage(&addr, "127.0.0.2", "group1").await;
    assert_eq!(src, None);
    assert_eq!(status_of(&c, "group1", "127.0.0.2").await, status::ONLINE);
    let n = a.beat(None).await.unwrap();
    assert!(n.leader.is_some(), "the first answer names the leader");
    assert_eq!(n.group.as_ref().map(Vec::len), Some(1));
    a.disk_usage(&USAGE).await.unwrap();
    assert_eq!(status_of(&c, "group1", "127.0.0.2").await, status::ACTIVE);

    // The second is filled from the first: WAIT_SYNC → SYNCING → OFFLINE (reported by its
    // source) → ACTIVE once it beats.
    let (mut b, src) = storage(&addr, "127.0.0.3", "group1").await;
    assert_eq!(src.unwrap().src_id, "127.0.0.2");
    assert_eq!(status_of(&c, "group1", "127.0.0.3").await, status::WAIT_SYNC);
    let n = a.beat(None).await.unwrap();
    let briefs = n.group.expect("group changed: briefs pushed");
    assert_eq!(
        briefs.iter().map(|b| (b.id.as_str(), b.status)).collect::<Vec<_>>(),
        [("127.0.0.2", status::ACTIVE), ("127.0.0.3", status::WAIT_SYNC)]
    );
    assert_eq!(a.beat(None).await.unwrap().group, None, "no change, no briefs");
    for st in [status::SYNCING, status::OFFLINE] {
        let brief = Brief { status: st, port: 23000, id: "127.0.0.3".into(), ip: "127.0.0.3".into() };
        report_status(&addr, "127.0.0.2".parse().ok(), T.0, "group1", brief, Profile::CLASSIC).await.unwrap();
        assert_eq!(status_of(&c, "group1", "127.0.0.3").await, st);
    }
    b.beat(None).await.unwrap();
    b.disk_usage(&USAGE).await.unwrap();
    assert_eq!(status_of(&c, "group1", "127.0.0.3").await, status::ACTIVE);

    // A second group.
    let (mut g2, _) = storage(&addr, "127.0.0.4", "group2").await;
    g2.beat(None).await.unwrap();
    g2.disk_usage(&USAGE).await.unwrap();

    // Uploads: round robin over groups, then over the storages of group1.
    let mut groups = Vec::new();
    let mut ips = Vec::new();
    for _ in 0..4 {
        let t = c.tracker.query_store(None).await.unwrap();
        groups.push(t.group.clone());
        ips.push(t.ip.clone());
    }
    assert_eq!(groups, ["group1", "group2", "group1", "group2"]);
    assert_ne!(ips[0], ips[2], "round robin inside group1");
    assert_eq!(c.tracker.query_store(Some("group2")).await.unwrap().ip, "127.0.0.4");
    let all = c.tracker.query_store_all(Some("group1")).await.unwrap();
    assert_eq!(all.servers.iter().map(|s| s.ip.as_str()).collect::<Vec<_>>(), ["127.0.0.2", "127.0.0.3"]);
    assert_eq!(c.tracker.query_store(Some("nogroup")).await.unwrap_err().status(), Status::ENOENT);

    // Reads of a file 127.0.0.2 just wrote go to it alone until 127.0.0.3 reports having
    // applied 127.0.0.2's records past the file's time.
    let now = fdfs_core::timefmt::now_unix();
    let f = file_from("127.0.0.2", now - 2);
    for _ in 0..4 {
        assert_eq!(c.tracker.query_fetch(&f).await.unwrap().ip, "127.0.0.2");
    }
    assert_eq!(c.tracker.query_fetch_all(&f).await.unwrap().servers.len(), 1);
    b.sync_report(&[SyncTimestamp { peer_id: "127.0.0.2".into(), timestamp: now as i32 }]).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(c.tracker.query_fetch(&f).await.unwrap().ip);
    }
    assert_eq!(seen.len(), 2, "both members serve it now");
    assert_eq!(c.tracker.query_fetch_all(&f).await.unwrap().servers.len(), 2);
    assert_eq!(c.tracker.query_update(&f).await.unwrap().ip, "127.0.0.2", "updates go to the source");

    // Listings.
    let groups = c.tracker.list_groups().await.unwrap();
    assert_eq!(
        groups.iter().map(|g| (g.group.as_str(), g.storage_count, g.active_count)).collect::<Vec<_>>(),
        [("group1", 2, 2), ("group2", 1, 1)]
    );
    assert_eq!(groups[0].free_mb, 50_000);
    let g1 = c.tracker.list_group("group1").await.unwrap();
    assert_eq!(g1.store_path_count, 1);
    let one = c.tracker.list_storages("group1", Some("127.0.0.3")).await.unwrap();
    assert_eq!((one.len(), one[0].version.as_str()), (1, "6.08"));
    assert_eq!(c.tracker.list_storages("group1", Some("127.0.0.9")).await.unwrap_err().status(), Status::ENOENT);
    let params = c.tracker.parameters().await.unwrap();
    assert_eq!(params.get("use_storage_id"), Some("0"), "{params:?}");

    // A storage that goes away goes OFFLINE; an online one cannot be deleted, an offline one can.
    assert_eq!(c.tracker.delete_storage("group1", "127.0.0.3").await.unwrap_err().status(), Status::EBUSY);
    b.quit().await;
    eventually(Duration::from_secs(5), "OFFLINE after disconnect", || async {
        (status_of(&c, "group1", "127.0.0.3").await == status::OFFLINE).then_some(())
    })
    .await;
    c.tracker.delete_storage("group1", "127.0.0.3").await.unwrap();
    assert_eq!(status_of(&c, "group1", "127.0.0.3").await, status::DELETED);
    assert_eq!(c.tracker.delete_storage("group1", "127.0.0.3").await.unwrap_err().status(), Status::EALREADY);
    // The others learn it from the changelog.
    let log = String::from_utf8(a.changelog().await.unwrap()).unwrap();
    assert!(log.ends_with(" group1 127.0.0.3 4 \n"), "{log:?}");
    assert!(a.changelog().await.unwrap().is_empty(), "read once");
}

#[tokio::test]
async fn missed_beats_take_a_storage_offline_and_beats_bring_it_back() {
    let t = TrackerProc::start("check_active_interval = 1\n");
    let addr = t.addr();
    let c = client(&addr);
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.beat(None).await.unwrap();
    a.disk_usage(&USAGE).await.unwrap();
    assert_eq!(status_of(&c, "group1", "127.0.0.2").await, status::ACTIVE);
    eventually(Duration::from_secs(6), "OFFLINE after missed beats", || async {
        (status_of(&c, "group1", "127.0.0.2").await == status::OFFLINE).then_some(())
    })
    .await;
    assert_eq!(c.tracker.query_store(None).await.unwrap_err().status(), Status::ENOENT, "no writable storage");
    a.beat(None).await.unwrap();
    assert_eq!(status_of(&c, "group1", "127.0.0.2").await, status::ACTIVE);
    assert!(c.tracker.query_store(None).await.is_ok());
}

#[tokio::test]
async fn reserved_space_refuses_a_full_server() {
    let t = TrackerProc::start("reserved_storage_space = 10%\n");
    let addr = t.addr();
    let c = client(&addr);
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.disk_usage(&[PathUsage { total_mb: 1000, free_mb: 50 }]).await.unwrap();
    assert_eq!(c.tracker.query_store(None).await.unwrap_err().status(), Status::ENOSPC);
    assert_eq!(c.tracker.query_store(Some("group1")).await.unwrap_err().status(), Status::ENOSPC);
    a.disk_usage(&[PathUsage { total_mb: 1000, free_mb: 500 }]).await.unwrap();
    assert_eq!(c.tracker.query_store(None).await.unwrap().ip, "127.0.0.2");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let mut t = TrackerProc::start("");
    let c = client(&t.addr());
    let (mut a, _) = storage(&t.addr(), "127.0.0.2", "group1").await;
    a.beat(None).await.unwrap();
    a.disk_usage(&USAGE).await.unwrap();
    drop(a);
    t.restart();
    // Known at once, OFFLINE until it joins again.
    let c2 = client(&t.addr());
    let groups = c2.tracker.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(status_of(&c2, "group1", "127.0.0.2").await, status::OFFLINE);
    // Rejoining (not as a new storage) goes straight to ONLINE, then ACTIVE.
    let mut a =
        ReportConnection::connect(&t.addr(), Some("127.0.0.2".parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
    let mut req = join_req("group1", 1);
    req.init_flag = false;
    req.status = status::ACTIVE.byte() as i8;
    assert_eq!(a.join(&req).await.unwrap().status, status::ONLINE);
    a.beat(None).await.unwrap();
    assert_eq!(status_of(&c2, "group1", "127.0.0.2").await, status::ACTIVE);
    drop(c);
}

/// Sends raw bytes, returns the answer header (if any) and whether the server closed after it.
fn raw(addr: &str, bytes: &[u8]) -> (Option<[u8; 10]>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut h = [0u8; 10];
    let answered = s.read_exact(&mut h).is_ok();
    let mut rest = [0u8; 1];
    let closed = matches!(s.read(&mut rest), Ok(0));
    (answered.then_some(h), closed)
}

#[tokio::test]
async fn malformed_input_gets_einval_and_the_daemon_keeps_serving() {
    let mut t = TrackerProc::start("");
    let addr = t.addr();
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.disk_usage(&USAGE).await.unwrap();
    let mut keep = TcpStream::connect(&addr).unwrap();
    let einval = [0, 0, 0, 0, 0, 0, 0, 0, 100, 22];
    for (what, bytes) in [
        ("negative length", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 101, 0]),
        ("absurd length", vec![0, 0, 1, 0, 0, 0, 0, 0, 101, 0]),
        ("unknown command", vec![0, 0, 0, 0, 0, 0, 0, 0, 250, 0]),
        ("101 with a body", vec![0, 0, 0, 0, 0, 0, 0, 3, 101, 0, 1, 2, 3]),
        ("104 with a short group", vec![0, 0, 0, 0, 0, 0, 0, 2, 104, 0, b'g', b'1']),
        ("join with garbage", [vec![0, 0, 0, 0, 0, 0, 0, 4, 81, 0], vec![9; 4]].concat()),
    ] {
        let (h, closed) = raw(&addr, &bytes);
        assert_eq!(h, Some(einval), "{what}");
        assert!(closed, "{what}: connection closed after EINVAL");
    }
    // Beats before JOIN are refused without closing.
    let (h, _) = raw(&addr, &[0, 0, 0, 0, 0, 0, 0, 0, 83, 0]);
    assert_eq!(h.unwrap()[9], Status::EACCES.0);
    // A connection that sends half a header and stalls does not block others.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(&[0, 0, 0]).unwrap();
    // Everything still works, on a connection opened before the attacks and on a new one.
    keep.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 111, 0]).unwrap();
    let mut h = [0u8; 10];
    keep.read_exact(&mut h).unwrap();
    assert_eq!(h, [0, 0, 0, 0, 0, 0, 0, 0, 100, 0]);
    assert_eq!(client(&addr).tracker.query_store(None).await.unwrap().ip, "127.0.0.2");
    assert!(t.daemon.is_running());
}

#[tokio::test]
async fn a_pypi_fastdfs_client_gets_an_upload_target() {
    let python = std::env::var("FDFS_PY3FDFS_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/fastdfs-interop/py3fdfs/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} missing: ci/test.sh installs py3Fdfs (or set FDFS_PY3FDFS_PYTHON)"
    );
    let t = TrackerProc::start("");
    let addr = t.addr();
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.disk_usage(&USAGE).await.unwrap();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "from fdfs_client.connection import ConnectionPool\n\
         from fdfs_client.tracker_client import Tracker_client\n\
         pool = ConnectionPool(name='t', host_tuple=('{host}',), port={port}, timeout=5)\n\
         s = Tracker_client(pool).tracker_query_storage_stor_without_group()\n\
         print(s.group_name.decode(), s.ip_addr.decode(), s.port, s.store_path_index)\n"
    );
    let out = tokio::process::Command::new(&python).arg("-c").arg(script).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "py3Fdfs failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "group1 127.0.0.2 23000 0");
}

#[tokio::test]
async fn start_stop_restart_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let port = fdfs_e2e::free_port("127.0.0.1");
    let conf = fdfs_e2e::write_tracker_conf(dir.path(), &format!("port = {port}\n"));
    let base = dir.path().join("tracker");
    let run = |action: &str| {
        std::process::Command::new(fdfs_e2e::bin("fdfs_trackerd")).arg(&conf).arg(action).output().unwrap()
    };
    let out = run("start");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid_file = base.join("data/fdfs_trackerd.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(client(&addr).tracker.list_groups().await.unwrap().is_empty());
    assert!(!run("start").status.success(), "a second start refuses");
    let out = run("restart");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid2: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_ne!(pid, pid2);
    assert!(client(&addr).tracker.list_groups().await.is_ok());
    assert!(run("stop").status.success());
    assert!(!pid_file.exists());
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid2), None).is_err(), "process gone");
    let log = std::fs::read_to_string(base.join("logs/trackerd.log")).unwrap();
    assert!(log.contains("listening on"), "{log}");
    let e = client(&addr).tracker.list_groups().await.unwrap_err();
    assert!(matches!(e, ClientError::NoTracker { .. }));
}

#[tokio::test]
async fn fdfs_monitor_lists_and_deletes_like_the_original() {
    let t = TrackerProc::start("");
    let addr = t.addr();
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.disk_usage(&[PathUsage { total_mb: 1_234_567, free_mb: 7_654 }]).await.unwrap();
    let (b, _) = storage(&addr, "127.0.0.3", "group1").await;
    let conf = t.dir.path().join("client.conf");
    std::fs::write(&conf, format!("tracker_server = {addr}\nbase_path = /tmp\n")).unwrap();
    let monitor = |args: &[&str]| {
        let out = std::process::Command::new(fdfs_e2e::bin("fdfs_monitor")).arg(&conf).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = monitor(&[]);
    assert!(ok, "{out}");
    for want in [
        &format!("tracker server count=1, current server index=0\n\ntracker server is {addr}\n\n"),
        "group count: 1\n",
        "\nGroup 1:\ngroup name = group1\ndisk total space     =  1.2 TB\ndisk free space      =  7.5 GB\n",
        "storage server count = 2\nreadable server count = 1\nwritable server count = 1\n",
        "\tStorage 1:\n\t\tid = 127.0.0.2\n\t\thost = 127.0.0.2:23000  ACTIVE\n",
        "\tStorage 2:\n\t\tid = 127.0.0.3\n\t\thost = 127.0.0.3:23000  WAIT_SYNC\n",
        "\t\tstotal_download_bytes = 0\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (ok, out) = monitor(&["list", "group1", "127.0.0.3"]);
    assert!(ok && out.contains("\t\tid = 127.0.0.3\n") && !out.contains("\t\tid = 127.0.0.2\n"), "{out}");
    // -h overrides the config's tracker.
    let (ok, _) = monitor(&["-h", &addr, "list"]);
    assert!(ok);
    // An ACTIVE storage cannot be deleted; one still waiting for its first copy can.
    let (ok, out) = monitor(&["delete", "group1", "127.0.0.2"]);
    assert!(!ok && out.contains("delete storage server group1::127.0.0.2 fail, error no: 16"), "{out}");
    let (ok, out) = monitor(&["delete", "group1", "127.0.0.3"]);
    assert!(ok && out.contains("delete storage server group1::127.0.0.3 success"), "{out}");
    let (_, out) = monitor(&["list"]);
    assert!(out.contains("host = 127.0.0.3:23000  DELETED"), "{out}");
    drop((a, b));
}

/// Two storages in group1 (127.0.0.2 with priority 20 and two paths, 127.0.0.3 with priority
/// 5) and one in group2 with the most free space.
async fn policy_cluster(extra: &str) -> (TrackerProc, Vec<ReportConnection>) {
    let t = TrackerProc::start(extra);
    let addr = t.addr();
    let mut conns = Vec::new();
    for (ip, group, prio, paths) in [
        ("127.0.0.2", "group1", 20, vec![(1000, 100), (1000, 900)]),
        ("127.0.0.3", "group1", 5, vec![(1000, 500), (1000, 400)]),
        ("127.0.0.4", "group2", 10, vec![(9000, 8000), (9000, 8000)]),
    ] {
        let mut c = ReportConnection::connect(&addr, Some(ip.parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
        let mut req = join_req(group, 2);
        req.upload_priority = prio;
        req.init_flag = false;
        req.status = status::ACTIVE.byte() as i8;
        c.join(&req).await.unwrap();
        let usage: Vec<PathUsage> = paths.into_iter().map(|(t, f)| PathUsage { total_mb: t, free_mb: f }).collect();
        c.disk_usage(&usage).await.unwrap();
        conns.push(c);
    }
    (t, conns)
}

#[tokio::test]
async fn every_selection_policy_through_the_daemon() {
    let pick = |t: &TrackerProc| client(&t.addr());
    // store_lookup 1: always store_group.
    let (t, _c) = policy_cluster("store_lookup = 1\nstore_group = group1\n").await;
    for _ in 0..3 {
        assert_eq!(pick(&t).tracker.query_store(None).await.unwrap().group, "group1");
    }
    // store_lookup 2: the group with the most free space.
    let (t, _c) = policy_cluster("store_lookup = 2\n").await;
    assert_eq!(pick(&t).tracker.query_store(None).await.unwrap().group, "group2");
    // store_server 1: first by ID; 2: lowest upload priority.
    let (t, _c) = policy_cluster("store_lookup = 1\nstore_group = group1\nstore_server = 1\n").await;
    for _ in 0..3 {
        assert_eq!(pick(&t).tracker.query_store(None).await.unwrap().ip, "127.0.0.2");
    }
    let (t, _c) = policy_cluster("store_lookup = 1\nstore_group = group1\nstore_server = 2\n").await;
    for _ in 0..3 {
        assert_eq!(pick(&t).tracker.query_store(None).await.unwrap().ip, "127.0.0.3");
    }
    // store_path 0: round robin; 2: the freest path (path 1 of 127.0.0.2).
    let (t, _c) = policy_cluster("store_lookup = 1\nstore_group = group1\nstore_server = 1\nstore_path = 0\n").await;
    let c = pick(&t);
    let mut paths = Vec::new();
    for _ in 0..4 {
        paths.push(c.tracker.query_store(None).await.unwrap().store_path_index);
    }
    assert_eq!(paths, [0, 1, 0, 1]);
    let (t, _c) = policy_cluster("store_lookup = 1\nstore_group = group1\nstore_server = 1\nstore_path = 2\n").await;
    for _ in 0..3 {
        assert_eq!(pick(&t).tracker.query_store(None).await.unwrap().store_path_index, 1);
    }
    // download_server 1: a fresh file is read from its source even when others have it.
    let (t, mut c) = policy_cluster("download_server = 1\n").await;
    let now = fdfs_core::timefmt::now_unix();
    c[1].sync_report(&[SyncTimestamp { peer_id: "127.0.0.2".into(), timestamp: now as i32 }]).await.unwrap();
    let f = file_from("127.0.0.2", now - 2);
    for _ in 0..4 {
        assert_eq!(pick(&t).tracker.query_fetch(&f).await.unwrap().ip, "127.0.0.2");
    }
    // download_server 0 with the same state spreads the reads.
    let (t, mut c) = policy_cluster("download_server = 0\n").await;
    c[1].sync_report(&[SyncTimestamp { peer_id: "127.0.0.2".into(), timestamp: now as i32 }]).await.unwrap();
    let cl = pick(&t);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(cl.tracker.query_fetch(&f).await.unwrap().ip);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn allow_hosts_and_max_connections_are_enforced() {
    let t = TrackerProc::start("allow_hosts = 127.0.0.5\nallow_hosts = 127.0.0.[7-8]\n");
    let addr = t.addr();
    // From 127.0.0.1: dropped without an answer.
    let (h, closed) = raw(&addr, &[0, 0, 0, 0, 0, 0, 0, 0, 111, 0]);
    assert_eq!((h, closed), (None, true), "dropped without an answer");
    for ip in ["127.0.0.5", "127.0.0.8"] {
        let mut c = ReportConnection::connect(&addr, Some(ip.parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
        c.connection().active_test().await.unwrap();
    }
    drop(t);

    let t = TrackerProc::start("max_connections = 2\nmax_connections_per_ip = 2\n");
    let addr = t.addr();
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Each held connection is answered once the tracker has accepted it, so both count.
    for s in &mut held {
        s.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 111, 0]).unwrap();
        let mut answer = [0u8; 10];
        s.read_exact(&mut answer).unwrap();
    }
    let (h, _) = raw(&addr, &[0, 0, 0, 0, 0, 0, 0, 0, 111, 0]);
    assert_eq!(h, None, "a third connection is refused");
    held.pop();
    fdfs_e2e::eventually(Duration::from_secs(5), "a slot freed up", || {
        let (h, _) = raw(&addr, &[0, 0, 0, 0, 0, 0, 0, 0, 111, 0]);
        async move { (h == Some([0, 0, 0, 0, 0, 0, 0, 0, 100, 0])).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn storage_ids_name_storages_and_route_id_named_files() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 127.0.0.2\n100002 group1 127.0.0.3 rw=read\n").unwrap();
    let t = TrackerProc::start(&format!(
        "use_storage_id = true\nstorage_ids_filename = {}\nid_type_in_filename = id\n",
        ids.display()
    ));
    let addr = t.addr();
    let c = client(&addr);
    let (mut a, _) = storage(&addr, "127.0.0.2", "group1").await;
    a.disk_usage(&USAGE).await.unwrap();
    let listed = c.tracker.list_storages("group1", None).await.unwrap();
    assert_eq!((listed[0].id.as_str(), listed[0].ip.as_str()), ("100001", "127.0.0.2"));
    // Not in the table: refused.
    let mut stranger =
        ReportConnection::connect(&addr, Some("127.0.0.9".parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
    assert_eq!(stranger.join(&join_req("group1", 1)).await.unwrap_err().status(), Status::ENOENT);
    // A read-only storage never gets uploads.
    let (mut b, _) = storage(&addr, "127.0.0.3", "group1").await;
    b.disk_usage(&USAGE).await.unwrap();
    for _ in 0..3 {
        assert_eq!(c.tracker.query_store(None).await.unwrap().ip, "127.0.0.2");
    }
    // Files named with server ID 100001 are read from 127.0.0.2.
    use fdfs_core::file_id::*;
    let now = fdfs_core::timefmt::now_unix();
    let core = NameCore { source: Source::ServerId(100001), timestamp: now as u32, size_field: 1 << 63 | 3, crc32: 1 };
    let f = FileId::parse(&format!("group1/M00/00/00/{}123.txt", core.to_b64())).unwrap();
    assert_eq!(c.tracker.query_fetch(&f).await.unwrap().ip, "127.0.0.2");
    assert_eq!(c.tracker.query_update(&f).await.unwrap().ip, "127.0.0.2");
    // Clients fetch the table.
    let lines = c.tracker.storage_ids().await.unwrap();
    assert_eq!(lines, ["100001 group1 127.0.0.2", "100002 group1 127.0.0.3 rw=read"]);
    let params = c.tracker.parameters().await.unwrap();
    assert_eq!(params.get("id_type_in_filename"), Some("id"));
}

#[tokio::test]
async fn two_trackers_elect_one_leader_and_the_survivor_takes_over() {
    let mut t1 = TrackerProc::start("");
    let t2 = TrackerProc::start("");
    let (a1, a2) = (t1.addr(), t2.addr());
    // A storage that reports to both makes them know each other.
    let trackers = vec![a1.clone(), a2.clone()];
    let mut conns = Vec::new();
    for t in [&a1, &a2] {
        let mut c =
            ReportConnection::connect(t, Some("127.0.0.2".parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
        let mut req = join_req("group1", 1);
        req.trackers = trackers.clone();
        req.init_flag = false;
        req.status = status::ACTIVE.byte() as i8;
        c.join(&req).await.unwrap();
        c.disk_usage(&USAGE).await.unwrap();
        conns.push(c);
    }
    let leader_of = |addr: String| async move {
        let mut c = fdfs_core::client::Connection::connect(&addr, T.0, T.1).await.ok()?;
        let body = c.call(fdfs_core::protocol::Command::ServerGetLeader, &[]).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let leader = eventually(Duration::from_secs(10), "one agreed leader", || async {
        let (l1, l2) = (leader_of(a1.clone()).await?, leader_of(a2.clone()).await?);
        (l1 == l2).then_some(l1)
    })
    .await;
    assert!(leader == a1 || leader == a2, "{leader}");
    // Only the leader pushes notifications; the follower answers beats with one zero byte.
    let (lead_conn, follow_conn) = if leader == a1 { (0, 1) } else { (1, 0) };
    assert_eq!(conns[follow_conn].beat(None).await.unwrap(), fdfs_core::protocol::report::ChangeNotify::default());
    let _ = conns[lead_conn].beat(None).await.unwrap();
    // Kill the leader: the survivor becomes leader, and clients listing both keep working.
    let survivor = if leader == a1 { a2.clone() } else { a1.clone() };
    let mut cfg = ClientConfig::for_tracker(ServerAddr::parse(&a1).unwrap());
    cfg.tracker_servers.push(ServerAddr::parse(&a2).unwrap());
    let c = Client::new(&cfg);
    if leader == a1 {
        t1.daemon.kill9();
    } else {
        drop(t2);
    }
    drop(conns);
    eventually(Duration::from_secs(15), "the survivor leads", || async {
        (leader_of(survivor.clone()).await? == survivor).then_some(())
    })
    .await;
    let mut s =
        ReportConnection::connect(&survivor, Some("127.0.0.2".parse().unwrap()), T, Profile::CLASSIC).await.unwrap();
    let mut req = join_req("group1", 1);
    req.trackers = trackers.clone();
    req.init_flag = false;
    req.status = status::ACTIVE.byte() as i8;
    s.join(&req).await.unwrap();
    let n = s.disk_usage(&USAGE).await.unwrap();
    assert!(n.leader.is_some(), "the new leader announces itself");
    for _ in 0..3 {
        assert_eq!(c.tracker.query_store(None).await.unwrap().ip, "127.0.0.2", "queries fail over to the survivor");
    }
    assert!(s.beat(None).await.unwrap().leader.is_none(), "once per connection");
}

/// logrotate moves the log away and sends SIGHUP (`postrotate`): the daemon goes on in a fresh
/// file under the same name and keeps serving.
#[tokio::test]
async fn sighup_reopens_the_log_for_logrotate() {
    let t = fdfs_e2e::TrackerProc::start("");
    let logs = t.daemon.base_path.join("logs");
    let (log, rotated) = (logs.join("trackerd.log"), logs.join("trackerd.log.1"));
    // The log is written by a thread of its own: its first lines may still be on their way.
    fdfs_e2e::eventually(Duration::from_secs(10), "the first lines in trackerd.log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("listening on").then_some(()) }
    })
    .await;
    std::fs::rename(&log, &rotated).unwrap();
    let pid = nix::unistd::Pid::from_raw(t.daemon.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let fresh = fdfs_e2e::eventually(Duration::from_secs(10), "a fresh trackerd.log", || {
        let text = std::fs::read_to_string(&log).ok();
        async move { text.filter(|t| t.contains("log file reopened")) }
    })
    .await;
    assert!(!fresh.contains("listening on"), "the fresh file starts empty: {fresh}");
    assert!(
        std::fs::read_to_string(&rotated).unwrap().contains("listening on"),
        "the old lines stay where they were moved"
    );
    let groups = client(&t.addr()).tracker.list_groups().await.unwrap();
    assert!(groups.is_empty(), "still serving after the reopen");
}

/// `run_by_user`: started as root, the daemon binds its port and then runs as that user, who
/// owns what it writes from then on (its log, pid and state files).
#[tokio::test]
async fn run_by_user_drops_root_after_binding() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = fdfs_e2e::write_tracker_conf(dir.path(), "run_by_user = nobody\n");
    let base = dir.path().join("tracker");
    nix::unistd::chown(&base, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let t = fdfs_e2e::Daemon::start("fdfs_trackerd", &conf, &base);
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid().unwrap())).unwrap();
    let ids =
        |key: &str| status.lines().find(|l| l.starts_with(key)).unwrap().split_whitespace().skip(1).collect::<Vec<_>>();
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    assert_eq!(ids("Uid:"), [uid.as_str(); 4], "real, effective, saved and fs uid: {status}");
    assert_eq!(ids("Gid:"), [gid.as_str(); 4], "{status}");
    let groups = client(&t.addr.to_string()).tracker.list_groups().await.unwrap();
    assert!(groups.is_empty(), "serving");
    for owned in [base.join("logs/trackerd.log"), base.join("data/fdfs_trackerd.pid")] {
        assert_eq!(std::fs::metadata(&owned).unwrap().uid(), nobody.uid.as_raw(), "{} is nobody's", owned.display());
    }
}

/// The daemon rotates its own log as libfastcommon does: at `rotate_error_log_size` the file
/// becomes `trackerd.log.<YYYYMMDD_HHMMSS>` and a fresh one starts; rotated files older than
/// `log_file_keep_days` are removed, and with `compress_old_error_log` those
/// `compress_error_log_days_before` days old are gzipped.
#[tokio::test]
async fn the_log_rotates_by_size_and_old_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("tracker/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let stale = logs.join("trackerd.log.20200101_000000");
    std::fs::write(&stale, "old\n").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(10 * 86_400);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    let aged = logs.join("trackerd.log.20250101_000000");
    std::fs::write(&aged, "two days old\n").unwrap();
    let two_days = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options().write(true).open(&aged).unwrap().set_modified(two_days).unwrap();
    let conf = fdfs_e2e::write_tracker_conf(
        dir.path(),
        "rotate_error_log_size = 4KB\nlog_file_keep_days = 3\ncompress_old_error_log = true\n\
         compress_error_log_days_before = 1\n",
    );
    let t = fdfs_e2e::Daemon::start("fdfs_trackerd", &conf, &dir.path().join("tracker"));
    let addr = t.addr.to_string();
    // Each unknown command is a warning line.
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&fdfs_core::protocol::Header::request(250u8, 0).encode());
        let mut buf = [0u8; 10];
        let _ = s.read(&mut buf);
    }
    let rotated = fdfs_e2e::eventually(Duration::from_secs(10), "rotated logs", || {
        let names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with("trackerd.log.2")
                    && !n.starts_with("trackerd.log.2020")
                    && !n.starts_with("trackerd.log.2025")
            })
            .collect();
        async move { (names.len() >= 2).then_some(names) }
    })
    .await;
    for n in &rotated {
        let len = std::fs::metadata(logs.join(n)).unwrap().len();
        assert!((4096..4096 + 512).contains(&len), "{n}: {len} bytes");
    }
    assert!(std::fs::metadata(logs.join("trackerd.log")).unwrap().len() < 4096);
    assert!(!stale.exists(), "a rotated log older than log_file_keep_days is removed");
    let gz = logs.join("trackerd.log.20250101_000000.gz");
    fdfs_e2e::eventually(Duration::from_secs(10), "the aged log compressed", || async {
        (gz.exists() && !aged.exists()).then_some(())
    })
    .await;
    let out = std::process::Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert_eq!(out.stdout, b"two days old\n", "gzip reads it back");
    assert!(rotated.iter().all(|n| logs.join(n).exists()), "fresh rotated logs stay uncompressed");
    let text = std::fs::read_to_string(logs.join(&rotated[0])).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.len() > 22 && first.as_bytes()[0] == b'[' && first.as_bytes()[20] == b']', "{first}");
}

/// SIGHUP also takes over a changed `log_level` (the one setting a running daemon can change).
#[tokio::test]
async fn sighup_takes_over_a_new_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let conf = fdfs_e2e::write_tracker_conf(dir.path(), "log_level = info\n");
    let t = fdfs_e2e::Daemon::start("fdfs_trackerd", &conf, &dir.path().join("tracker"));
    let log = dir.path().join("tracker/logs/trackerd.log");
    // A malformed query is logged at DEBUG.
    let malformed = || {
        let mut s = TcpStream::connect(t.addr).unwrap();
        let mut req = fdfs_core::protocol::Header::request(102u8, 3).encode().to_vec();
        req.extend_from_slice(b"abc");
        s.write_all(&req).unwrap();
        let mut buf = [0u8; 10];
        let _ = s.read(&mut buf);
    };
    malformed();
    let pid = nix::unistd::Pid::from_raw(t.pid().unwrap() as i32);
    let text = std::fs::read_to_string(&conf).unwrap().replace("log_level = info", "log_level = debug");
    std::fs::write(&conf, text).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    fdfs_e2e::eventually(Duration::from_secs(10), "the new level taken over", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("log_level is Debug").then_some(()) }
    })
    .await;
    malformed();
    let text = fdfs_e2e::eventually(Duration::from_secs(10), "a DEBUG line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("DEBUG - malformed request").then_some(text) }
    })
    .await;
    assert_eq!(text.matches("DEBUG - malformed request").count(), 1, "only after the SIGHUP: {text}");
}
