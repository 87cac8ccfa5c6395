//! Trunk mode written by us, in C's layout: our tracker names a trunk server, small uploads
//! to either member get 60-character names and live in slots of trunk files (the other member
//! asks the trunk server with 27/28, deletes free with 29), slots are reused, the trunk binlog
//! reaches the other member (30), and every live file's slot header matches its name on both
//! members while the trunk binlog never calls a live slot free.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::RemoteFilename;
use fdfs_core::protocol::Status;
use fdfs_core::trunk::space::{FreeSpace, SpaceRecord, TrunkSettings};
use fdfs_e2e::{eventually, Cluster, StorageProc};

const TRACKER_CONF: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
     trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n";

fn settings() -> TrunkSettings {
    TrunkSettings { slot_min_size: 256, slot_max_size: 1 << 20, alignment: 256, trunk_file_size: 4 << 20, merge: true }
}

fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The free space the trunk binlog under `base` describes.
fn replayed(base: &Path) -> FreeSpace {
    let text = std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap_or_default();
    let mut f = FreeSpace::new(settings(), 0);
    for line in text.lines() {
        let r = SpaceRecord::parse(line).unwrap_or_else(|| panic!("trunk binlog line {line:?}"));
        f.replay(&r);
    }
    f
}

/// Every live trunk file: its slot is not free in the trunk binlog, no two overlap, and its
/// header on each member matches its name.
fn check_slots(live: &BTreeMap<String, Vec<u8>>, trunk_server: &Path, members: &[&StorageProc]) {
    let free = replayed(trunk_server);
    let mut taken: Vec<(u32, u32, u32)> = Vec::new();
    for name in live.keys().filter(|n| n.len() == 60) {
        let r = RemoteFilename::parse(name, Some(1)).unwrap();
        let loc = r.trunk_location().unwrap();
        for b in free.free_blocks() {
            let overlap = b.trunk_id == loc.trunk_id
                && (b.offset as u64) < loc.offset as u64 + loc.size as u64
                && (loc.offset as u64) < b.offset as u64 + b.size as u64;
            assert!(!overlap, "{name}: its slot {loc:?} is free in the trunk binlog ({b:?})");
        }
        taken.push((loc.trunk_id, loc.offset, loc.size));
        for m in members {
            let slot = fdfs_core::trunk::open(&r, &m.base()).unwrap();
            assert!(slot.is_some(), "{name}: slot header on {}", m.ip);
        }
    }
    taken.sort();
    for w in taken.windows(2) {
        assert!(w[0].0 != w[1].0 || w[0].1 + w[0].2 <= w[1].1, "slots overlap: {:?} {:?}", w[0], w[1]);
    }
}

/// Waits until every file of `live` reads back from every member of `members`.
async fn on_every_member(c: &fdfs_core::client::Client, members: &[&StorageProc], live: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in live {
        eventually(Duration::from_secs(30), "every file on every member", || async {
            for m in members {
                if data.is_empty() {
                    if c.storage.file_info(&m.addr(), "group1", name, 0).await.ok()?.file_size != 0 {
                        return None;
                    }
                } else if c.storage.download(&m.addr(), "group1", name, 0, 0).await.ok()? != *data {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

/// Waits until `to` holds the trunk binlog of `from`, byte for byte.
async fn same_trunk_binlog(from: &StorageProc, to: &StorageProc) {
    eventually(Duration::from_secs(20), "the trunk binlog pushed", || async {
        let want = std::fs::read(from.base().join("data/trunk/binlog")).ok()?;
        (!want.is_empty() && std::fs::read(to.base().join("data/trunk/binlog")).ok()? == want).then_some(())
    })
    .await;
}

/// Uploads a 1-byte file to each member until it lands in a trunk slot (members learn the
/// trunk server from the leader's next beat answer; until then small files are regular files).
async fn until_trunk_slots(
    c: &fdfs_core::client::Client,
    members: &[&StorageProc],
    live: &mut BTreeMap<String, Vec<u8>>,
) {
    for m in members {
        for tries in 0.. {
            assert!(tries < 200, "{} never put a small file into a trunk slot", m.ip);
            let r = c.storage.upload(&m.addr(), UploadKind::Normal, -1, "", Content::Bytes(b"w")).await.unwrap();
            let trunk = r.filename.len() == 60;
            live.insert(r.filename, b"w".to_vec());
            if trunk {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn small_uploads_to_either_member_go_into_shared_trunk_slots() {
    let cluster = Cluster::start(TRACKER_CONF, &["127.0.0.41", "127.0.0.42"], "subdir_count_per_path = 4\n").await;
    let c = cluster.client();
    let (a, b) = (&cluster.storages[0], &cluster.storages[1]);
    // The tracker names a trunk server (the longest trunk binlog; here the first by ID).
    let server = eventually(Duration::from_secs(20), "a trunk server", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        list.iter().find(|s| s.if_trunk_server).map(|s| s.id.clone())
    })
    .await;
    let (ts, other) = if server == a.id { (a, b) } else { (b, a) };

    let mut live: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // The member goes first: the trunk file its slot is in exists only on the trunk server yet.
    until_trunk_slots(&c, &[other, ts], &mut live).await;
    let sizes = [0usize, 27, 4096, 100_000, 1_048_552, 1_048_553, 3000, 70_000];
    for (i, &n) in sizes.iter().enumerate() {
        for (j, to) in [ts, other].iter().enumerate() {
            let data = content(n, (i * 2 + j) as u8);
            let r = c.storage.upload(&to.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
            let expect = if n + 24 <= 1 << 20 { 60 } else { 44 };
            assert_eq!(r.filename.len(), expect, "{n} bytes to {}: {}", to.ip, r.filename);
            live.insert(r.filename, data);
        }
    }
    // An appender file never goes into a trunk.
    let r = c.storage.upload(&ts.addr(), UploadKind::Appender, -1, "log", Content::Bytes(b"appender")).await.unwrap();
    assert_eq!(r.filename.len(), 44);

    // Every file reads back from both members (replication wrote the same slots), and the
    // trunk binlog reached the other member byte for byte.
    on_every_member(&c, &[ts, other], &live).await;
    same_trunk_binlog(ts, other).await;
    check_slots(&live, &ts.base(), &[ts, other]);
    // The trunk server reported its trunk file id to the tracker (73).
    eventually(Duration::from_secs(20), "the trunk file id at the tracker", || async {
        (c.tracker.list_group("group1").await.ok()?.current_trunk_file_id >= 1).then_some(())
    })
    .await;

    // Deletes through either member free the slots; new uploads reuse them.
    let small: Vec<String> = live.keys().filter(|n| n.len() == 60 && live[*n].len() == 3000).cloned().collect();
    assert_eq!(small.len(), 2);
    let freed: Vec<(u32, u32)> = small
        .iter()
        .map(|n| {
            let l = RemoteFilename::parse(n, Some(1)).unwrap().trunk_location().unwrap();
            (l.trunk_id, l.offset)
        })
        .collect();
    c.storage.delete(&ts.addr(), "group1", &small[0]).await.unwrap();
    c.storage.delete(&other.addr(), "group1", &small[1]).await.unwrap();
    for n in &small {
        live.remove(n);
        for m in [ts, other] {
            eventually(Duration::from_secs(20), "the delete replicated", || async {
                let e = c.storage.download(&m.addr(), "group1", n, 0, 0).await.err()?;
                (e.status() == Status::ENOENT).then_some(())
            })
            .await;
        }
    }
    let mut reused = 0;
    for i in 0..6 {
        let data = content(2000, 100 + i);
        let to = if i % 2 == 0 { ts } else { other };
        let r = c.storage.upload(&to.addr(), UploadKind::Normal, -1, "txt", Content::Bytes(&data)).await.unwrap();
        let l = RemoteFilename::parse(&r.filename, Some(1)).unwrap().trunk_location().unwrap();
        reused += freed.contains(&(l.trunk_id, l.offset)) as usize;
        live.insert(r.filename, data);
    }
    assert!(reused >= 1, "a freed slot is handed out again");
    on_every_member(&c, &[ts, other], &live).await;
    same_trunk_binlog(ts, other).await;
    check_slots(&live, &ts.base(), &[ts, other]);

    // The module serves the slots we wrote as it serves C's (from the member's copy).
    let ngx = fdfs_e2e::NginxProc::serving_store(&other.ip, &other.base());
    for (name, data) in live.iter().filter(|(n, d)| n.len() == 60 && !d.is_empty()) {
        let resp = fdfs_e2e::http(&ngx.addr, "GET", format!("/group1/{name}").as_bytes(), &[]);
        assert_eq!(resp.status, 200, "{name}");
        assert!(resp.body == *data, "{name}: the slot's content through the module");
    }
    // A deleted one is not served from the freed slot (the module then proxies to the source
    // storage, which has no HTTP server here).
    let gone = fdfs_e2e::http(&ngx.addr, "GET", format!("/group1/{}", small[0]).as_bytes(), &[]);
    assert_ne!(gone.status, 200, "a deleted trunk file");
}

/// Uploads `n` small files to `to`, each of which must land in a trunk slot.
async fn upload_small(
    c: &fdfs_core::client::Client,
    to: &StorageProc,
    n: usize,
    seed: u8,
    live: &mut BTreeMap<String, Vec<u8>>,
) {
    for i in 0..n {
        let data = content(300 + i * 37, seed.wrapping_add(i as u8));
        let r = match c.storage.upload(&to.addr(), UploadKind::Normal, -1, "jpg", Content::Bytes(&data)).await {
            Ok(r) => r,
            Err(e) => {
                let log = std::fs::read_to_string(to.base().join("logs/storaged.log")).unwrap_or_default();
                panic!("upload to {}: {e}\n{log}", to.ip);
            }
        };
        assert_eq!(r.filename.len(), 60, "to {}: {}", to.ip, r.filename);
        live.insert(r.filename, data);
    }
}

async fn trunk_server_id(c: &fdfs_core::client::Client, not: Option<&str>) -> String {
    eventually(Duration::from_secs(30), "a trunk server", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        list.iter().find(|s| s.if_trunk_server && Some(s.id.as_str()) != not).map(|s| s.id.clone())
    })
    .await
}

/// The trunk server is killed: the tracker names the other member (it holds the whole trunk
/// binlog, pushed before every slot was answered), which allocates without ever handing out a
/// slot still in use; `fdfs_monitor set_trunk_server` answers as C's; the old trunk server
/// comes back as a member, gets the new trunk binlog, and asks the new trunk server for slots.
#[tokio::test]
async fn a_killed_trunk_server_is_replaced_without_handing_out_space_twice() {
    let mut cluster = Cluster::start(
        &format!("{TRACKER_CONF}check_active_interval = 2\n"),
        &["127.0.0.43", "127.0.0.44"],
        "subdir_count_per_path = 4\n",
    )
    .await;
    let c = cluster.client();
    let first = trunk_server_id(&c, None).await;
    let (ts_i, other_i) = if first == cluster.storages[0].id { (0, 1) } else { (1, 0) };
    let mut live = BTreeMap::new();
    // Both learn who the trunk server is; then a burst to each, and the trunk server killed at
    // once, before its last lines could have been pushed had it answered first.
    until_trunk_slots(&c, &[&cluster.storages[ts_i], &cluster.storages[other_i]], &mut live).await;
    upload_small(&c, &cluster.storages[other_i], 20, 1, &mut live).await;
    upload_small(&c, &cluster.storages[ts_i], 20, 2, &mut live).await;
    cluster.storages[ts_i].daemon.kill9();

    let second = trunk_server_id(&c, Some(&first)).await;
    assert_eq!(second, cluster.storages[other_i].id);
    let (code, out, _) = cluster.tool("fdfs_monitor", &["set_trunk_server", "group1", ""]);
    assert_eq!(
        (code, out.lines().last().unwrap_or_default()),
        (0, format!("set trunk server group1:: success, new trunk server: {second}").as_str())
    );
    let (code, out, _) = cluster.tool("fdfs_monitor", &["set_trunk_server", "group1", &second]);
    assert_eq!(code, 114, "already the trunk server: {out}");
    let (code, _, _) = cluster.tool("fdfs_monitor", &["set_trunk_server", "group1", &first]);
    assert_eq!(code, 64, "the old one is not ACTIVE (ENONET)");

    // The new trunk server allocates around every slot the old one handed out.
    let survivor = &cluster.storages[other_i];
    eventually(Duration::from_secs(20), "uploads into the new trunk server's slots", || async {
        let r = c.storage.upload(&survivor.addr(), UploadKind::Normal, -1, "", Content::Bytes(b"probe")).await.ok()?;
        (r.filename.len() == 60).then_some(())
    })
    .await;
    upload_small(&c, survivor, 30, 3, &mut live).await;

    // The old trunk server returns as a member: it gets the new trunk binlog (its own kept
    // as a backup) and the files, and its small uploads are allocated by the new trunk server.
    let tracker = cluster.tracker.addr();
    cluster.storages[ts_i].restart(&tracker, false).await;
    // Pooled connections to the killed process are dead.
    let c = cluster.client();
    let (back, survivor) = (&cluster.storages[ts_i], &cluster.storages[other_i]);
    upload_small(&c, back, 20, 4, &mut live).await;
    on_every_member(&c, &[back, survivor], &live).await;
    same_trunk_binlog(survivor, back).await;
    let backups = std::fs::read_dir(back.base().join("data/trunk")).unwrap().flatten();
    assert!(
        backups.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("binlog.2")),
        "the old trunk binlog kept as binlog.<time>"
    );
    check_slots(&live, &survivor.base(), &[back, survivor]);
}

/// kill -9 of the trunk server under load from clients of both members: every upload that was
/// answered reads back intact after the restart, and the rebuilt free space never calls an
/// answered file's slot free (its confirmation was durable before the answer).
#[tokio::test]
async fn kill_9_of_the_trunk_server_under_load_loses_no_acknowledged_trunk_file() {
    let mut cluster = Cluster::start(TRACKER_CONF, &["127.0.0.45", "127.0.0.46"], "subdir_count_per_path = 4\n").await;
    let c = cluster.client();
    let first = trunk_server_id(&c, None).await;
    let (ts_i, other_i) = if first == cluster.storages[0].id { (0, 1) } else { (1, 0) };
    let mut warm = BTreeMap::new();
    until_trunk_slots(&c, &[&cluster.storages[ts_i], &cluster.storages[other_i]], &mut warm).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8usize {
        let to = &cluster.storages[if w % 2 == 0 { ts_i } else { other_i }];
        let (c, addr, acked, stop) = (cluster.client(), to.addr(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            for i in 0usize.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let data = content(1 + (i * 7919 + w * 104_729) % (150 << 10), w as u8);
                match c.storage.upload(&addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await {
                    Ok(r) => acked.lock().unwrap().push((addr.clone(), r.filename, data)),
                    Err(_) => return,
                }
            }
        }));
    }
    let progress = acked.clone();
    eventually(Duration::from_secs(60), "100 acknowledged uploads", || {
        let n = progress.lock().unwrap().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    cluster.storages[ts_i].daemon.kill9();
    // The member's writers go on until their next upload fails or finds no trunk server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let trunk_acks = acked.iter().filter(|(_, n, _)| n.len() == 60).count();
    assert!(trunk_acks >= 80, "the load went into trunk slots ({trunk_acks} of {})", acked.len());
    let tracker = cluster.tracker.addr();
    cluster.storages[ts_i].restart(&tracker, false).await;
    let c = cluster.client();
    for (addr, name, data) in &acked {
        let got = c.storage.download(addr, "group1", name, 0, 0).await.unwrap();
        assert!(got[..] == data[..], "{name} intact on {addr}");
    }
    let live: BTreeMap<String, Vec<u8>> = acked.into_iter().map(|(_, n, d)| (n, d)).chain(warm).collect();
    // Only the slots' state in the trunk server's binlog is checked here: the other member may
    // not have every file yet.
    check_slots(&live, &cluster.storages[ts_i].base(), &[]);
    // And the restarted trunk server hands out slots again, around every one in use.
    let ts = &cluster.storages[ts_i];
    eventually(Duration::from_secs(20), "the restarted trunk server allocating", || async {
        let r = c.storage.upload(&ts.addr(), UploadKind::Normal, -1, "", Content::Bytes(b"again")).await.ok()?;
        (r.filename.len() == 60).then_some(())
    })
    .await;
}

/// `trunk_create_file_advance`: the trunk server creates trunk files ahead of need, on C's
/// schedule, until the free trunk space reaches the threshold, and allocates from them.
#[tokio::test]
async fn trunk_files_are_created_ahead_when_asked() {
    let cluster = Cluster::start(
        &format!(
            "{TRACKER_CONF}trunk_create_file_advance = true\ntrunk_create_file_time_base = 00:00\n\
             trunk_create_file_interval = 60\ntrunk_create_file_space_threshold = 10MB\n"
        ),
        &["127.0.0.47"],
        "subdir_count_per_path = 4\n",
    )
    .await;
    let s = &cluster.storages[0];
    let trunk_files = || {
        let mut n = 0;
        for hi in 0..4 {
            for lo in 0..4 {
                let dir = s.base().join(format!("data/{hi:02X}/{lo:02X}"));
                n += std::fs::read_dir(dir)
                    .map(|d| d.flatten().filter(|e| e.file_name().len() == 6).count())
                    .unwrap_or(0);
            }
        }
        n
    };
    eventually(Duration::from_secs(40), "three 4 MiB trunk files (10 MB free)", || async {
        (trunk_files() == 3).then_some(())
    })
    .await;
    let free = replayed(&s.base()).free_bytes();
    assert_eq!(free, 3 * (4 << 20), "all of them free space in the trunk binlog");
    let c = cluster.client();
    let r = c.storage.upload(&s.addr(), UploadKind::Normal, -1, "", Content::Bytes(b"ahead")).await.unwrap();
    let loc = RemoteFilename::parse(&r.filename, Some(1)).unwrap().trunk_location().unwrap();
    assert!(loc.trunk_id <= 3, "allocated from a file made ahead: {loc:?}");
    assert_eq!(trunk_files(), 3);
}
