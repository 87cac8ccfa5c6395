//! Unauthenticated packets from a host that is no tracker and no member (127.0.0.9x here) and
//! crafted uploads: each test sends exactly one attack of an attack campaign and checks that
//! nothing was hijacked, corrupted or leaked, and that the cluster still works.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::{FileId, RemoteFilename};
use fdfs_core::protocol::peer::{TrunkAllocReq, TrunkInfo, TrunkSlotReq};
use fdfs_core::protocol::report::{Brief, JoinReq, ReportStatusReq};
use fdfs_core::protocol::storage::CreateLinkReq;
use fdfs_core::protocol::{Command, Header, Profile};
use fdfs_core::tracker::status;
use fdfs_e2e::{connect_from, eventually, free_port, raw_request, raw_request_from, Cluster, TrackerProc};

const EACCES: u8 = 13;
const EBUSY: u8 = 16;
const ENOENT: u8 = 2;
const EINVAL: u8 = 22;

fn field(text: &str, width: usize) -> Vec<u8> {
    let mut f = text.as_bytes().to_vec();
    f.resize(width, 0);
    f
}

async fn status_of(c: &fdfs_core::client::Client, id: &str) -> Option<fdfs_core::protocol::StorageStatus> {
    let list = c.tracker.list_storages("group1", None).await.ok()?;
    list.iter().find(|s| s.id == id).map(|s| s.status)
}

#[tokio::test]
async fn report_ip_changed_cannot_move_a_live_storage() {
    let cl = Cluster::start("", &["127.0.0.61"], "").await;
    let t = cl.tracker.addr();
    let body = [field("group1", 16), field("127.0.0.61", 16), field("127.0.0.91", 16)].concat();
    let (st, _) = raw_request_from("127.0.0.91", &t, Command::StorageReportIpChanged as u8, &body);
    assert_eq!(st, EBUSY, "the storage is online at its address: it has not moved");
    let c = cl.client();
    assert_eq!(status_of(&c, "127.0.0.61").await, Some(status::ACTIVE));
    assert_eq!(status_of(&c, "127.0.0.91").await, None, "no record for the attacker");
    let store = c.tracker.query_store(None).await.unwrap();
    assert_eq!(store.ip, "127.0.0.61", "uploads still go to the storage");
}

#[tokio::test]
async fn create_link_with_a_newline_in_a_name_part_is_refused_and_replication_goes_on() {
    let cl = Cluster::start("", &["127.0.0.62", "127.0.0.63"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let first = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"source")).await.unwrap();
    let source = FileId::parse(&first.file_id()).unwrap().remote.to_string();
    for (ext, prefix) in [("j\nC x", ""), ("a b", ""), ("jpg", "_\nD")] {
        let req = CreateLinkReq {
            group: "group1".into(),
            prefix: prefix.into(),
            ext: ext.into(),
            master_filename: if prefix.is_empty() { String::new() } else { source.clone() },
            source_filename: source.clone(),
            signature: Vec::new(),
        };
        let (st, _) = raw_request(&a, Command::CreateLink as u8, &req.encode());
        assert_eq!(st, EINVAL, "CREATE_LINK with {ext:?} / {prefix:?}");
    }
    // The binlog has no injected line: a later upload still reaches the other member.
    let later = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"later")).await.unwrap();
    let name = FileId::parse(&later.file_id()).unwrap().remote.to_string();
    eventually(Duration::from_secs(20), "the later upload replicated", || async {
        (c.storage.download(&b, "group1", &name, 0, 0).await.ok()? == b"later"[..]).then_some(())
    })
    .await;
    let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    for line in binlog.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() >= 3 && fields[0].parse::<i64>().is_ok(), "binlog line {line:?}");
    }
}

/// Two different 128-byte contents with one MD5 (the public pair of Wang et al.).
const MD5_PAIR: [&str; 2] = [
    "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b30283e488832571415a\
     085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0\
     e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70",
    "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b30283e4888325f1415a\
     085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0\
     e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn a_signature_collision_does_not_serve_the_attackers_bytes() {
    use md5::Digest;
    let (attacker, victim) = (unhex(MD5_PAIR[0]), unhex(MD5_PAIR[1]));
    assert_ne!(attacker, victim);
    assert_eq!(md5::Md5::digest(&attacker), md5::Md5::digest(&victim), "the pair collides");
    let cl = Cluster::start("", &["127.0.0.64"], "check_file_duplicate = 1\nfile_signature_method = md5\n").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let first = c.storage.upload(&a, UploadKind::Normal, -1, "jpg", Content::Bytes(&attacker)).await.unwrap();
    let second = c.storage.upload(&a, UploadKind::Normal, -1, "jpg", Content::Bytes(&victim)).await.unwrap();
    for (r, bytes) in [(&first, &attacker), (&second, &victim)] {
        let name = FileId::parse(&r.file_id()).unwrap().remote.to_string();
        assert_eq!(c.storage.download(&a, "group1", &name, 0, 0).await.unwrap(), bytes[..], "{name}");
    }
    // Equal content is still shared.
    let third = c.storage.upload(&a, UploadKind::Normal, -1, "jpg", Content::Bytes(&victim)).await.unwrap();
    let name = FileId::parse(&third.file_id()).unwrap().remote.to_string();
    let path = cl.storages[0].base().join("data").join(&name[4..]);
    assert!(std::fs::symlink_metadata(path).unwrap().file_type().is_symlink(), "a repeat is a link");
}

const TRUNK_CONF: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
     trunk_alloc_alignment_size = 256\n";

#[tokio::test]
async fn trunk_space_and_binlog_commands_from_a_stranger_change_nothing() {
    let cl = Cluster::start(TRUNK_CONF, &["127.0.0.65", "127.0.0.66"], "").await;
    let c = cl.client();
    let addrs: Vec<String> = cl.storages.iter().map(|s| s.addr()).collect();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let live = eventually(Duration::from_secs(30), "an upload into a trunk slot", || async {
        let r = c.storage.upload(&addrs[0], UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()?;
        let name = FileId::parse(&r.file_id()).unwrap().remote.to_string();
        (name.len() == 60).then_some(name)
    })
    .await;
    let r = RemoteFilename::parse(&live, Some(1)).unwrap();
    let loc = r.trunk_location().unwrap();
    let info = TrunkInfo {
        store_path_index: 0,
        sub_path_high: r.high,
        sub_path_low: r.low,
        trunk_file_id: loc.trunk_id as i32,
        offset: loc.offset as i32,
        size: loc.size as i32,
    };
    let slot = TrunkSlotReq { group: "group1".into(), info }.encode(Profile::CLASSIC);
    let alloc =
        TrunkAllocReq { group: "group1".into(), file_size: 1 << 20, store_path_index: 0 }.encode(Profile::CLASSIC);
    let binlogs: Vec<Vec<u8>> =
        cl.storages.iter().map(|s| std::fs::read(s.base().join("data/trunk/binlog")).unwrap_or_default()).collect();
    for addr in &addrs {
        for (cmd, body) in [
            (Command::TrunkFreeSpace, &slot[..]),
            (Command::TrunkAllocConfirm, &slot[..]),
            (Command::TrunkAllocSpace, &alloc[..]),
            (Command::TrunkSyncBinlog, b"1 A 0 0 0 1 0 4096\n"),
            (Command::TrunkDeleteBinlogMarks, b""),
            (Command::TrunkTruncateBinlogFile, b""),
            // Ours: "remove these retired trunk files" must come from the trunk server alone.
            (Command::TrunkRemoveFiles, format!("1 D 0 {} {} {} 0 4194304\n", r.high, r.low, loc.trunk_id).as_bytes()),
        ] {
            let (st, _) = raw_request_from("127.0.0.92", addr, cmd as u8, body);
            assert_eq!(st, EACCES, "{cmd:?} from a stranger to {addr}");
        }
    }
    for (s, before) in cl.storages.iter().zip(&binlogs) {
        let now = std::fs::read(s.base().join("data/trunk/binlog")).unwrap_or_default();
        assert!(now.starts_with(before), "{}: the trunk binlog was not cut or rewritten", s.ip);
    }
    // The live slot was not freed: uploads of the same size go elsewhere, the file stays whole.
    for i in 0..20u8 {
        let other = vec![i; 3000];
        c.storage
            .upload(&addrs[(i % 2) as usize], UploadKind::Normal, -1, "bin", Content::Bytes(&other))
            .await
            .unwrap();
    }
    for addr in &addrs {
        eventually(Duration::from_secs(20), "the live file intact on every member", || async {
            (c.storage.download(addr, "group1", &live, 0, 0).await.ok()? == data).then_some(())
        })
        .await;
    }
}

/// A SYNC_CREATE_FILE whose head names a longer file name than its packet holds is refused at
/// once (EINVAL, connection closed), as every other streamed head is: the storage never reads
/// into the bytes after the packet, nor waits for ones that never come.
#[tokio::test]
async fn a_sync_create_head_longer_than_its_packet_is_refused_at_once() {
    let cl = Cluster::start("", &["127.0.0.166"], "network_timeout = 30\n").await;
    let addr = cl.storages[0].addr();
    let name = "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg";
    let mut body = (name.len() as i64).to_be_bytes().to_vec();
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&1_700_000_000i32.to_be_bytes());
    body.extend_from_slice(&field("group1", 16));
    body.extend_from_slice(&name.as_bytes()[..3]);
    let started = Instant::now();
    let (st, _) = raw_request(&addr, Command::SyncCreateFile as u8, &body);
    assert_eq!(st, EINVAL);
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once, not after a timeout");
    let c = cl.client();
    c.storage.upload(&addr, UploadKind::Normal, -1, "bin", Content::Bytes(b"still works")).await.unwrap();
}

#[tokio::test]
async fn leader_and_status_messages_from_a_stranger_change_nothing() {
    let cl = Cluster::start("", &["127.0.0.67"], "").await;
    let t = cl.tracker.addr();
    let leader_before = eventually(Duration::from_secs(10), "a leader", || async {
        let answer = raw_request(&t, Command::ServerGetLeader as u8, b"");
        (answer.0 == 0).then_some(answer)
    })
    .await;
    for cmd in [Command::TrackerNotifyNextLeader, Command::TrackerCommitNextLeader] {
        let (st, _) = raw_request_from("127.0.0.93", &t, cmd as u8, b"127.0.0.93:22122");
        assert_eq!(st, ENOENT, "{cmd:?} naming a tracker nobody knows");
    }
    let (st, _) = raw_request_from("127.0.0.93", &t, Command::TrackerNotifyReselectLeader as u8, b"");
    assert_eq!(st, EACCES, "68 from a host that is no storage and no tracker");
    assert_eq!(raw_request(&t, Command::ServerGetLeader as u8, b""), leader_before, "the leader is unchanged");
    let brief = Brief { status: status::RECOVERY, port: 23000, id: "127.0.0.67".into(), ip: "127.0.0.67".into() };
    let body = ReportStatusReq { group: "group1".into(), brief }.encode(Profile::V6_16);
    let (st, _) = raw_request_from("127.0.0.93", &t, Command::StorageReportStatus as u8, &body);
    assert_eq!(st, EACCES, "76 from a host that is no member");
    let c = cl.client();
    assert_eq!(status_of(&c, "127.0.0.67").await, Some(status::ACTIVE), "the storage stays ACTIVE");
}

/// Serves `l` as a FastDFS peer would, a thread per connection: every request's body is read
/// and dropped, then `answer` writes the answer to command `cmd` (false: close).
fn fake_peer(l: std::net::TcpListener, answer: fn(u8, &mut std::net::TcpStream) -> bool) {
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = [0u8; 10];
                while s.read_exact(&mut head).is_ok() {
                    let h = Header::decode(&head, u64::MAX).unwrap();
                    let drained = std::io::copy(&mut (&mut s).take(h.pkg_len), &mut std::io::sink());
                    if drained.is_err() || !answer(h.cmd, &mut s) {
                        return;
                    }
                }
            });
        }
    });
}

fn reply(s: &mut std::net::TcpStream, status: u8, body: &[u8]) -> bool {
    let mut out = Header::response(fdfs_core::protocol::Status(status), body.len()).encode().to_vec();
    out.extend_from_slice(body);
    s.write_all(&out).is_ok()
}

/// A "tracker" that answers 61 and then serves garbage as every state file (63).
fn garbage_tracker() -> String {
    let l = std::net::TcpListener::bind("127.0.0.94:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    fake_peer(l, |cmd, s| {
        if cmd != Command::TrackerGetOneSysFile as u8 {
            return reply(s, 0, b"");
        }
        let junk = b"[Global]\ngroup_count=1\n[Group001]\ngroup_name=\xff\n=\n[[[[\n";
        reply(s, 0, &[&(junk.len() as i64).to_be_bytes()[..], junk].concat())
    });
    addr
}

#[tokio::test]
async fn a_garbage_state_copy_never_stops_a_restart() {
    let fake = garbage_tracker();
    let mut tracker = TrackerProc::start("");
    let t = tracker.addr();
    let join = fdfs_e2e::storage_join("group1", 23000, vec![fake.clone(), t.clone()]);
    let started = Instant::now();
    let (st, _) = raw_request_from("127.0.0.95", &t, Command::StorageJoin as u8, &join.encode(Profile::CLASSIC));
    assert_eq!(st, 0, "the JOIN goes on as on a fresh tracker");
    assert!(started.elapsed() < Duration::from_secs(15), "the copy is bounded in time");
    assert!(tracker.daemon.rss_kib() < 200 << 10, "memory bounded: {} KiB", tracker.daemon.rss_kib());
    let groups_file = tracker.daemon.base_path.join("data/storage_groups_new.dat");
    eventually(Duration::from_secs(10), "the JOIN's group saved", || async {
        std::fs::read_to_string(&groups_file).ok()?.contains("group1").then_some(())
    })
    .await;
    tracker.daemon.kill9();
    tracker.restart();
    let groups = fdfs_e2e::client_for(&tracker.addr()).tracker.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1, "it restarts with its own state (the JOIN's group), not the garbage");
}

#[tokio::test]
async fn a_huge_upload_trickled_a_byte_at_a_time_is_cut_off() {
    let cl = Cluster::start("", &["127.0.0.68"], "network_timeout = 3\n").await;
    let a = cl.storages[0].addr();
    let mut s = connect_from("127.0.0.96", &a);
    let mut head = vec![0u8]; // store path index
    head.extend_from_slice(&(100u64 << 20).to_be_bytes());
    head.extend_from_slice(&field("bin", 6));
    let mut req = Header::request(Command::UploadFile as u8, head.len() + (100 << 20)).encode().to_vec();
    req.extend_from_slice(&head);
    s.write_all(&req).unwrap();
    let started = Instant::now();
    let cut = loop {
        std::thread::sleep(Duration::from_millis(1500));
        if s.write_all(b"x").is_err() || started.elapsed() > Duration::from_secs(40) {
            break started.elapsed();
        }
        let mut probe = [0u8; 64];
        s.set_nonblocking(true).unwrap();
        let closed = s.read(&mut probe).is_ok();
        s.set_nonblocking(false).unwrap();
        if closed {
            break started.elapsed();
        }
    };
    assert!(cut < Duration::from_secs(15), "a trickle of a 100 MB declaration was cut off after {cut:?}");
}

#[tokio::test]
async fn a_flood_of_metrics_connections_holds_few_descriptors() {
    let port = free_port("127.0.0.69");
    let metrics = format!("127.0.0.69:{port}");
    let cl = Cluster::start("", &["127.0.0.69"], &format!("metrics_listen = {metrics}\n")).await;
    let pid = cl.storages[0].daemon.pid().unwrap();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let before = fds();
    let mut idle = Vec::new();
    for _ in 0..500 {
        if let Ok(s) = std::net::TcpStream::connect(&metrics) {
            idle.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = fds();
    assert!(during < before + 100, "500 idle metrics connections: {before} → {during} descriptors");
    // The storage still serves.
    let c = cl.client();
    let r = c.storage.upload(&cl.storages[0].addr(), UploadKind::Normal, -1, "txt", Content::Bytes(b"ok")).await;
    assert!(r.is_ok(), "uploads go on: {r:?}");
}

/// A member that joins group1 from `ip` on `port`, takes whatever it is sent (answers 0), and
/// answers 26 with [`hostile_list`] (ended by its true length) and every file query with
/// ENOENT. Beats until the test ends.
fn hostile_member(tracker: &str, ip: &str, port: u16) {
    fake_peer(std::net::TcpListener::bind((ip, port)).unwrap(), |cmd, s| {
        if cmd == Command::FetchOnePathBinlog as u8 {
            let mut out = Header::response(fdfs_core::protocol::Status::OK, 0);
            out.pkg_len = 1 << 58;
            let _ = s.write_all(&out.encode());
            let mut w = std::io::BufWriter::with_capacity(1 << 20, s);
            let n = hostile_list(&mut w);
            let _ = w.write_all(&n.to_be_bytes());
            return false;
        }
        reply(s, if matches!(cmd, 14 | 22) { ENOENT } else { 0 }, b"")
    });
    let join = JoinReq { subdir_count_per_path: 4, ..fdfs_e2e::storage_join("group1", port, vec![tracker.to_owned()]) };
    let mut s = connect_from(ip, tracker);
    let (st, _) = fdfs_e2e::raw_exchange(&mut s, Command::StorageJoin as u8, &join.encode(Profile::CLASSIC));
    assert_eq!(st, 0, "the hostile member joins");
    // As a new storage does: asks for its sync source, and is filled by it (answering 0).
    let (st, _) = fdfs_e2e::raw_exchange(&mut s, Command::StorageSyncDestReq as u8, b"");
    assert_eq!(st, 0, "87 SYNC_DEST_REQ");
    std::thread::spawn(move || loop {
        if fdfs_e2e::raw_exchange(&mut s, Command::StorageBeat as u8, b"").0 != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    });
}

/// 300 MB of lines no record parses, one 8 MB line, names that are no file of a storage, one
/// that is: the list of a member gone wrong or hostile.
fn hostile_list(w: &mut dyn Write) -> u64 {
    let junk = [vec![b'z'; 999], vec![b'\n']].concat();
    let mut n = 0u64;
    let mut put = |w: &mut dyn Write, b: &[u8]| {
        let _ = w.write_all(b);
        n += b.len() as u64;
    };
    for _ in 0..300_000 {
        put(w, &junk);
    }
    put(w, &vec![b'y'; 8 << 20]);
    put(w, b"\n1700000000 c M09/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg\n");
    put(w, b"1700000000 c M00/../../../../etc/passwd\n1700000000 l M00/00/00/x M05/00/00/y\n");
    put(w, b"1700000000 c M00/00/00/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg\n");
    n
}

#[tokio::test]
async fn disk_recovery_from_a_hostile_member_stays_bounded_and_skips_bad_names() {
    let mut cl = Cluster::start("", &["127.0.0.70"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"kept by A")).await.unwrap();
    let tracker = cl.tracker.addr();
    let port = cl.storages[0].daemon.addr.port();
    hostile_member(&tracker, "127.0.0.97", port);
    eventually(Duration::from_secs(30), "the hostile member ACTIVE", || async {
        (status_of(&c, "127.0.0.97").await? == status::ACTIVE).then_some(())
    })
    .await;
    // A's disk is replaced: it recovers from the only other ACTIVE member.
    let base = cl.storages[0].base();
    cl.storages[0].daemon.stop();
    for hi in 0..4 {
        let _ = std::fs::remove_dir_all(base.join(format!("data/{hi:02X}")));
    }
    std::fs::remove_file(base.join("data/.fastdfs_vars")).unwrap();
    cl.storages[0].restart(&tracker, false).await;
    let peak = cl.storages[0].daemon.peak_rss_kib();
    assert!(peak < 150 << 10, "a 308 MB list held {peak} KiB at the peak");
    let log = std::fs::read_to_string(base.join("logs/storaged.log")).unwrap();
    let skipped = log.lines().filter(|l| l.contains("disk recovery: skipped")).count();
    assert_eq!(skipped, 3, "each bad name skipped and said once");
    assert!(log.contains("already here, 3 skipped"), "recovery finished");
}

/// The crafted trunk name reads nothing, by the protocol or the module; the victim's file is
/// served by both.
async fn refused_and_served(c: &fdfs_core::client::Client, a: &str, ngx: &str, fake: &str, theirs: &str) {
    let got = c.storage.download(a, "group1", fake, 0, 0).await;
    assert!(got.is_err(), "the protocol read {} bytes for the crafted name", got.map(|b| b.len()).unwrap_or(0));
    let resp = fdfs_e2e::http(ngx, "GET", format!("/group1/{fake}").as_bytes(), &[]);
    assert_ne!(resp.status, 200, "the module served the crafted name");
    assert!(!resp.body.windows(16).any(|w| w == [b'V'; 16]), "no victim bytes through the module");
    assert_eq!(c.storage.download(a, "group1", theirs, 0, 0).await.unwrap(), vec![b'V'; 3000]);
    let resp = fdfs_e2e::http(ngx, "GET", format!("/group1/{theirs}").as_bytes(), &[]);
    assert_eq!((resp.status, resp.body.len()), (200, 3000), "the victim's own file is served");
}

#[tokio::test]
async fn a_fake_slot_header_inside_an_upload_reads_nothing_past_its_slot() {
    use fdfs_core::file_id::{generate, NameKind, NewName, Source, TrunkLocation};
    use fdfs_core::trunk::{expected_header, SlotKind};
    let mut cl = Cluster::start(TRUNK_CONF, &["127.0.0.71"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let source = Source::Ip("127.0.0.71".parse().unwrap());
    let crafted = |trunk_id, offset, high, low| {
        let kind = NameKind::Trunk(TrunkLocation { trunk_id, offset, size: 8192 });
        let n = NewName {
            source,
            timestamp: 1_700_000_000,
            size: 6000,
            crc32: 0,
            kind,
            ext: "bin",
            store_path_index: 0,
            high,
            low,
        };
        generate(&n, &mut fastrand::Rng::with_seed(1))
    };
    // The attacker's upload carries the header a crafted name of 6000 bytes would have.
    let probe = crafted(1, 0, 0, 0);
    let header = expected_header(&probe, &probe.trunk_location().unwrap(), SlotKind::File);
    let evil = [vec![0u8; 100], header.to_vec(), vec![b'a'; 1500]].concat();
    let victim = vec![b'V'; 3000];
    let (own, theirs) = eventually(Duration::from_secs(30), "both uploads in trunk slots", || async {
        let own = c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&evil)).await.ok()?;
        let theirs = c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&victim)).await.ok()?;
        (own.filename.len() == 60 && theirs.filename.len() == 60).then_some((own.filename, theirs.filename))
    })
    .await;
    let own = RemoteFilename::parse(&own, Some(1)).unwrap();
    let at = own.trunk_location().unwrap();
    let fake = crafted(at.trunk_id, at.offset + 24 + 100, own.high, own.low);
    assert_eq!(expected_header(&fake, &fake.trunk_location().unwrap(), SlotKind::File), header, "the fake header fits");
    let fake = fake.to_string();

    let store = cl.storages[0].base();
    let ngx = fdfs_e2e::NginxProc::serving_store("127.0.0.71", &store);
    refused_and_served(&c, &a, &ngx.addr, &fake, &theirs).await;
    // The same after a clean restart (the index kept) and after a crash (rebuilt from the binlog).
    let tracker = cl.tracker.addr();
    for crash in [false, true] {
        cl.storages[0].restart(&tracker, crash).await;
        refused_and_served(&cl.client(), &cl.storages[0].addr(), &ngx.addr, &fake, &theirs).await;
    }
}

#[tokio::test]
async fn slots_asked_for_and_never_confirmed_are_bounded() {
    let cl = Cluster::start(TRUNK_CONF, &["127.0.0.72", "127.0.0.73"], "").await;
    let c = cl.client();
    let data = vec![7u8; 3000];
    let (server, member) = eventually(Duration::from_secs(30), "a trunk server that hands out slots", || async {
        c.storage.upload(&cl.storages[0].addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()?;
        let alloc = TrunkAllocReq { group: "group1".into(), file_size: 1024, store_path_index: 0 };
        let body = alloc.encode(Profile::CLASSIC);
        let (a, b) = (&cl.storages[0], &cl.storages[1]);
        [(a, b), (b, a)].into_iter().find_map(|(server, member)| {
            (raw_request_from(&member.ip, &server.addr(), Command::TrunkAllocSpace as u8, &body).0 == 0)
                .then(|| (server.addr(), member.ip.clone()))
        })
    })
    .await;
    // A member that asks and never confirms: the trunk server stops at a bound.
    let alloc = TrunkAllocReq { group: "group1".into(), file_size: 1024, store_path_index: 0 }.encode(Profile::CLASSIC);
    let mut s = connect_from(&member, &server);
    let mut granted = 1;
    let refused = loop {
        let (st, _) = fdfs_e2e::raw_exchange(&mut s, Command::TrunkAllocSpace as u8, &alloc);
        if st != 0 || granted > 10_000 {
            break st;
        }
        granted += 1;
    };
    assert_eq!(refused, EBUSY, "after {granted} slots held");
    assert!(granted <= 2048, "{granted} slots held at once");
    // Uploads go on, as regular files while the slots are held.
    let r = c.storage.upload(&server, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
    assert_eq!(c.storage.download(&server, "group1", &r.filename, 0, 0).await.unwrap(), data);
}
