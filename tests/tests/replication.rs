//! Groups that stay identical: binlog replication between real fdfs_storaged processes on
//! 127.0.0.x, crash recovery, a new member's full copy, and read routing that never sends a
//! client to a member that lacks the file.

use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::peer::SyncFileHead;
use fdfs_core::protocol::storage::MetaOp;
use fdfs_core::protocol::storage::StreamedHead;
use fdfs_core::protocol::{Command, Status};
use fdfs_e2e::{eventually, raw_request_from, Cluster, StorageProc};

/// Waits until `addr` (a storage) serves `id` with exactly `want`.
async fn on_storage(c: &Client, addr: &str, id: &str, want: &[u8]) {
    let f = FileId::parse(id).unwrap();
    let name = f.remote.to_string();
    eventually(Duration::from_secs(10), &format!("{id} on {addr}"), || {
        let name = name.clone();
        async move {
            let got = c.storage.download(addr, "group1", &name, 0, 0).await.ok()?;
            (got[..] == *want).then_some(())
        }
    })
    .await;
}

async fn gone_from(c: &Client, addr: &str, id: &str) {
    let name = FileId::parse(id).unwrap().remote.to_string();
    eventually(Duration::from_secs(10), &format!("{id} deleted on {addr}"), || {
        let name = name.clone();
        async move { c.storage.download(addr, "group1", &name, 0, 0).await.is_err().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn every_change_reaches_the_other_member() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = c.storage.upload(&a, UploadKind::Normal, 0, "jpg", Content::Bytes(&data)).await.unwrap();
    let id = r.file_id();
    on_storage(&c, &b, &id, &data).await;
    // Same mtime on both, so Last-Modified agrees across replicas.
    let ia = c.storage.file_info(&a, "group1", &r.filename, 0).await.unwrap();
    let ib = c.storage.file_info(&b, "group1", &r.filename, 0).await.unwrap();
    assert_eq!(ia, ib);

    // Metadata follows.
    c.storage
        .set_metadata(&a, "group1", &r.filename, &[(b"w".to_vec(), b"1".to_vec())], MetaOp::Overwrite)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "metadata on B", || async {
        (c.storage.get_metadata(&b, "group1", &r.filename).await.ok()? == vec![(b"w".to_vec(), b"1".to_vec())])
            .then_some(())
    })
    .await;

    // Appender: append, modify, truncate, each reproduced.
    let app = c.storage.upload(&a, UploadKind::Appender, 0, "log", Content::Bytes(b"one ")).await.unwrap();
    let aid = app.file_id();
    on_storage(&c, &b, &aid, b"one ").await;
    c.storage.append(&a, &app.filename, Content::Bytes(b"two three")).await.unwrap();
    on_storage(&c, &b, &aid, b"one two three").await;
    c.storage.modify(&a, &app.filename, 4, Content::Bytes(b"TWO")).await.unwrap();
    on_storage(&c, &b, &aid, b"one TWO three").await;
    c.storage.truncate(&a, &app.filename, 7).await.unwrap();
    on_storage(&c, &b, &aid, b"one TWO").await;
    let normal = c.storage.regenerate_appender_filename(&a, &app.filename).await.unwrap();
    on_storage(&c, &b, &normal.file_id(), b"one TWO").await;
    gone_from(&c, &b, &aid).await;

    // Uploads to B reach A too, and deletes follow.
    let rb = c.storage.upload(&b, UploadKind::Normal, 0, "txt", Content::Bytes(b"from b")).await.unwrap();
    on_storage(&c, &a, &rb.file_id(), b"from b").await;
    c.storage.delete(&a, "group1", &r.filename).await.unwrap();
    gone_from(&c, &b, &id).await;

    // Nothing came back: A's binlog holds only its own records and what B originated.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log_a = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    let replica_a: Vec<&str> =
        log_a.lines().filter(|l| l.split(' ').nth(1).unwrap().chars().all(|c| c.is_lowercase())).collect();
    assert_eq!(replica_a.len(), 1, "only B's upload was replicated to A:\n{log_a}");
}

#[tokio::test]
async fn a_killed_member_catches_up_with_nothing_lost_or_duplicated() {
    let mut cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let tracker = cl.tracker.addr();
    let c = cl.client();
    let a = cl.storages[0].addr();
    cl.storages[1].daemon.kill9();
    let mut files = Vec::new();
    for i in 0..200u32 {
        let data = format!("file number {i}").into_bytes();
        let r = c.storage.upload(&a, UploadKind::Normal, 0, "txt", Content::Bytes(&data)).await.unwrap();
        files.push((r.file_id(), data));
    }
    cl.storages[1].restart(&tracker, false).await;
    let b = cl.storages[1].addr();
    for (id, data) in &files {
        on_storage(&c, &b, id, data).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log_b = std::fs::read_to_string(cl.storages[1].base().join("data/sync/binlog.000")).unwrap();
    let mut created: Vec<&str> =
        log_b.lines().filter(|l| l.contains(" c ")).map(|l| l.split(' ').nth(2).unwrap()).collect();
    let n = created.len();
    created.sort();
    created.dedup();
    assert_eq!((created.len(), n), (200, 200), "every file once");
    let log_a = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    assert!(!log_a.lines().any(|l| l.contains(" c ")), "nothing was sent back to A");
}

#[tokio::test]
async fn a_new_member_receives_a_full_copy_then_goes_active() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let mut files = Vec::new();
    for i in 0..1000u32 {
        let data = format!("content {i}").into_bytes();
        let r = c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
        files.push((r.file_id(), data));
    }
    // StorageProc::start waits for ACTIVE: WAIT_SYNC → SYNCING → OFFLINE → ACTIVE.
    let port = cl.storages[0].daemon.addr.port();
    let new = StorageProc::start(&cl.tracker.addr(), "127.0.0.4", &format!("port = {port}\n")).await;
    let addr = new.addr();
    for (id, data) in &files {
        let name = FileId::parse(id).unwrap().remote.to_string();
        let got = c.storage.download(&addr, "group1", &name, 0, 0).await.unwrap();
        assert_eq!(&got[..], &data[..], "{id}");
    }
    let listed = c.tracker.list_storages("group1", Some("127.0.0.4")).await.unwrap();
    assert_eq!(listed[0].sync_src_id, "127.0.0.2");
}

#[tokio::test]
async fn reads_right_after_an_upload_never_hit_a_member_without_the_file() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let c = cl.client();
    for i in 0..40u32 {
        let data = format!("fresh {i}").into_bytes();
        let id = c.upload_buffer(&data, "txt").await.unwrap();
        // The tracker routes to a member only once it reported having applied the file.
        assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], &data[..], "read {i} right after upload");
    }
}

#[tokio::test]
async fn uploads_and_downloads_continue_when_a_tracker_dies() {
    let mut t1 = fdfs_e2e::TrackerProc::start("");
    let t2 = fdfs_e2e::TrackerProc::start("");
    let (a1, a2) = (t1.addr(), t2.addr());
    let conf = format!("tracker_server = {a1}\ntracker_server = {a2}\n");
    let s = StorageProc::start(&a1, "127.0.0.2", &conf).await;
    s.wait_active(&a2).await;
    let mut cfg = fdfs_core::config::ClientConfig::for_tracker(fdfs_core::config::ServerAddr::parse(&a1).unwrap());
    cfg.tracker_servers.push(fdfs_core::config::ServerAddr::parse(&a2).unwrap());
    let c = Client::new(&cfg);
    let before = c.upload_buffer(b"before", "txt").await.unwrap();
    t1.daemon.kill9();
    for i in 0..5 {
        let data = format!("after {i}").into_bytes();
        let id = c.upload_buffer(&data, "txt").await.unwrap();
        assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], &data[..]);
    }
    assert_eq!(&c.download(&before, 0, 0).await.unwrap()[..], b"before");
}

/// A record committed while the sender is between reading the binlog and waiting for news
/// (saving its mark) must still wake it: with a 30 s heartbeat, a lost wake-up shows as a
/// file that takes half a minute to reach the peer. Each upload here follows the moment the
/// previous one became visible on the peer, which is when the sender saves its mark.
#[tokio::test]
async fn a_change_made_while_the_sender_saves_its_mark_is_not_missed() {
    let mut cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    // The sender (A) waits for news at most one heartbeat; make that long.
    let conf = cl.storages[0].daemon.conf.clone();
    let text =
        std::fs::read_to_string(&conf).unwrap().replace("heart_beat_interval = 1\n", "heart_beat_interval = 30\n");
    assert!(text.contains("heart_beat_interval = 30"));
    std::fs::write(&conf, text).unwrap();
    let t = cl.tracker.addr();
    cl.storages[0].restart(&t, false).await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let mut ids = Vec::new();
    for i in 0..80u32 {
        let r = c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&i.to_be_bytes())).await.unwrap();
        ids.push(r);
    }
    for (i, r) in ids.iter().enumerate() {
        on_storage(&c, &b, &r.file_id(), &(i as u32).to_be_bytes()).await;
    }
    // Deletes are the quickest changes to commit: each lands about when the sender, having
    // just shipped the previous one, saves its mark.
    for (i, r) in ids.iter().enumerate() {
        c.storage.delete(&a, &r.group, &r.filename).await.unwrap();
        let start = std::time::Instant::now();
        while c.storage.download(&b, &r.group, &r.filename, 0, 0).await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(5), "delete {i} waited {:?} for the sender", start.elapsed());
            tokio::task::yield_now().await;
        }
    }
}

/// `sync_start_time` / `sync_end_time`: outside the window the sender holds its changes back
/// (local time, as C); inside it they flow again.
#[tokio::test]
async fn replication_waits_for_the_sync_window() {
    let mut cl = Cluster::start("", &["127.0.0.66", "127.0.0.67"], "").await;
    let tracker = cl.tracker.addr();
    let now = std::process::Command::new("date").arg("+%H %M").output().unwrap();
    let now = String::from_utf8_lossy(&now.stdout).to_string();
    let (h, m): (u32, u32) = match now.split_whitespace().collect::<Vec<_>>()[..] {
        [h, m] => (h.parse().unwrap(), m.parse().unwrap()),
        _ => panic!("date: {now}"),
    };
    let window = format!("sync_start_time = {:02}:{m:02}\nsync_end_time = {:02}:{m:02}\n", (h + 2) % 24, (h + 3) % 24);
    let plain = std::fs::read_to_string(&cl.storages[0].daemon.conf).unwrap();
    std::fs::write(&cl.storages[0].daemon.conf, format!("{plain}{window}")).unwrap();
    cl.storages[0].restart(&tracker, false).await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let r = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"after hours")).await.unwrap();
    // The sender says so when it has the change in hand and holds it back.
    let log = cl.storages[0].base().join("logs/storaged.log");
    eventually(Duration::from_secs(20), "the sender holding the change back", || async {
        std::fs::read_to_string(&log).ok()?.contains("changes held back until it opens").then_some(())
    })
    .await;
    assert!(c.storage.download(&b, "group1", &r.filename, 0, 0).await.is_err(), "held back outside the window");
    // Back to all day: the change goes out.
    std::fs::write(&cl.storages[0].daemon.conf, plain).unwrap();
    cl.storages[0].restart(&tracker, false).await;
    let c = cl.client();
    on_storage(&c, &b, &r.file_id(), b"after hours").await;
}

/// `store_slave_file_use_link` (tracker.conf): a slave is stored as C stores it then, its
/// content under a name of its own and the slave name a symbolic link to it (`C`, then `L`);
/// the member gets both (16, 19); deleting the slave removes both, here and there.
#[tokio::test]
async fn slaves_stored_as_links_replicate_and_delete_as_links() {
    let cl = Cluster::start("store_slave_file_use_link = true\n", &["127.0.0.68", "127.0.0.69"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let master = c.storage.upload(&a, UploadKind::Normal, -1, "jpg", Content::Bytes(b"master")).await.unwrap();
    let slave =
        c.storage.upload_slave(&a, &master.filename, "_150x150", "jpg", Content::Bytes(b"thumbnail")).await.unwrap();
    let path_of = |base: std::path::PathBuf, name: &str| base.join("data").join(&name["M00/".len()..]);
    let on_a = path_of(cl.storages[0].base(), &slave.filename);
    assert!(std::fs::symlink_metadata(&on_a).unwrap().file_type().is_symlink(), "the slave is a link");
    let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    let content = binlog
        .lines()
        .find_map(|l| {
            l.split(' ')
                .collect::<Vec<_>>()
                .get(3)
                .filter(|_| l.contains(&format!(" L {} ", slave.filename)))
                .map(|s| s.to_string())
        })
        .unwrap_or_else(|| panic!("an L record for the slave: {binlog}"));
    let target = std::fs::read_link(&on_a).unwrap();
    assert!(target.is_relative() && target.as_os_str().len() < 60, "a short link, kept in the inode: {target:?}");
    assert_eq!(std::fs::canonicalize(&on_a).unwrap(), path_of(cl.storages[0].base(), &content));
    on_storage(&c, &b, &slave.file_id(), b"thumbnail").await;
    let on_b = path_of(cl.storages[1].base(), &slave.filename);
    assert!(std::fs::symlink_metadata(&on_b).unwrap().file_type().is_symlink(), "a link on the member too");
    c.storage.delete(&a, "group1", &slave.filename).await.unwrap();
    assert!(std::fs::symlink_metadata(&on_a).is_err() && !path_of(cl.storages[0].base(), &content).exists());
    gone_from(&c, &b, &slave.file_id()).await;
    eventually(Duration::from_secs(10), "the content file gone from the member", || async {
        (!path_of(cl.storages[1].base(), &content).exists()).then_some(())
    })
    .await;
    on_storage(&c, &b, &master.file_id(), b"master").await;
}

/// `compress_binlog`: binlog files before the one being written become `binlog.NNN.gz` at
/// `compress_binlog_time`, and a new member's full copy still gets their history (the sender
/// reads compressed binlogs, C's too, with the same positions).
#[tokio::test]
async fn compressed_binlogs_still_give_a_new_member_everything() {
    let mut cl = Cluster::start("", &["127.0.0.70"], "compress_binlog = true\ncompress_binlog_time = 00:00\n").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let mut files = Vec::new();
    for i in 0..5u8 {
        let data = vec![i; 1000 + i as usize];
        files.push((c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap(), data));
    }
    // As after a rotation: those records are in an older file, a newer one is being written.
    let tracker = cl.tracker.addr();
    let sync = cl.storages[0].base().join("data/sync");
    cl.storages[0].daemon.stop();
    std::fs::write(sync.join("binlog_index.dat"), "current_write=1\ncurrent_compress=0\n").unwrap();
    cl.storages[0].restart(&tracker, false).await;
    eventually(Duration::from_secs(20), "binlog.000 compressed", || async {
        (sync.join("binlog.000.gz").exists() && !sync.join("binlog.000").exists()).then_some(())
    })
    .await;
    let port = cl.storages[0].daemon.addr.port();
    let member = fdfs_e2e::StorageProc::start(&tracker, "127.0.0.71", &format!("port = {port}\n")).await;
    let c = cl.client();
    for (r, data) in &files {
        on_storage(&c, &member.addr(), &r.file_id(), data).await;
    }
}

/// `file_sync_skip_invalid_record`, C's meaning: a binlog line that is no record stops
/// replication to the members where it is (by default, so the operator hears of it before the
/// members drift apart); with the key set the line is skipped and replication goes on.
#[tokio::test]
async fn a_damaged_binlog_line_stops_replication_unless_told_to_skip_it() {
    let mut cl = Cluster::start("", &["127.0.0.117", "127.0.0.118"], "").await;
    let tracker = cl.tracker.addr();
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let first = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"one")).await.unwrap();
    on_storage(&c, &b, &first.file_id(), b"one").await;
    let damage = |s: &StorageProc| {
        use std::io::Write;
        let path = s.base().join("data/sync/binlog.000");
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(b"this is no binlog record\n").unwrap();
    };
    cl.storages[0].restart_after(&tracker, false, damage).await;
    let second = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"two")).await.unwrap();
    let log = cl.storages[0].base().join("logs/storaged.log");
    eventually(Duration::from_secs(10), "the sender stopping at the bad line", || async {
        std::fs::read_to_string(&log).ok()?.contains("replication to it stops here").then_some(())
    })
    .await;
    // Stopped at the bad line, which comes before the second file's record.
    let name = second.filename.clone();
    assert!(c.storage.download(&b, "group1", &name, 0, 0).await.is_err(), "nothing after the bad line reaches B");

    let skip = |s: &StorageProc| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&s.daemon.conf).unwrap();
        f.write_all(b"\nfile_sync_skip_invalid_record = true\n").unwrap();
    };
    cl.storages[0].restart_after(&tracker, false, skip).await;
    on_storage(&c, &b, &second.file_id(), b"two").await;
}

/// A SYNC_CREATE_FILE naming a file this member has already, of the same size, is recorded and
/// answered EEXIST with the copy here left as it is; one of another size replaces the copy (C's
/// rules). The receiver finds this out when it publishes (a rename that does not replace).
#[tokio::test]
async fn a_sync_create_of_a_file_already_here_is_answered_eexist_and_another_size_replaces_it() {
    let cl = Cluster::start("", &["127.0.0.174", "127.0.0.175"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let id =
        c.storage.upload(&b, UploadKind::Normal, -1, "bin", Content::Bytes(b"first copy")).await.unwrap().file_id();
    on_storage(&c, &a, &id, b"first copy").await;
    let name = FileId::parse(&id).unwrap().remote.to_string();
    // From the other member's address, as its sender would send it.
    let sync_create = |content: &[u8]| {
        let head = SyncFileHead {
            file_size: content.len() as u64,
            timestamp: 1_700_000_000,
            group: "group1".into(),
            filename: name.clone(),
            content_omitted: false,
        };
        let mut body = head.encode_head().to_vec();
        body.extend_from_slice(content);
        raw_request_from("127.0.0.175", &a, Command::SyncCreateFile as u8, &body).0
    };
    assert_eq!(sync_create(b"other copy"), Status::EEXIST.0, "same size: EEXIST");
    assert_eq!(
        c.storage.download(&a, "group1", &name, 0, 0).await.unwrap(),
        &b"first copy"[..],
        "the copy here is kept"
    );
    assert_eq!(sync_create(b"a longer copy"), 0, "another size: replaced");
    assert_eq!(c.storage.download(&a, "group1", &name, 0, 0).await.unwrap(), &b"a longer copy"[..]);
    let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    assert_eq!(
        binlog.lines().filter(|l| l.ends_with(&format!("c {name}"))).count(),
        3,
        "every create recorded:\n{binlog}"
    );
}
