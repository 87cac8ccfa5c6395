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
    // Both members learn the trunk server from the leader's next beat answer; until then a
    // small upload is stored as a regular file (which every reader accepts).
    for m in [ts, other] {
        for tries in 0.. {
            assert!(tries < 200, "{} never put a small file into a trunk slot", m.ip);
            let data = content(10, 0);
            let r = c.storage.upload(&m.addr(), UploadKind::Normal, -1, "", Content::Bytes(&data)).await.unwrap();
            let trunk = r.filename.len() == 60;
            live.insert(r.filename, data);
            if trunk {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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

    // Every file reads back from both members (replication wrote the same slots).
    for (name, data) in &live {
        for m in [ts, other] {
            let got = eventually(Duration::from_secs(30), "replicated", || async {
                if data.is_empty() {
                    let info = c.storage.file_info(&m.addr(), "group1", name, 0).await.ok()?;
                    return (info.file_size == 0).then(Vec::new);
                }
                c.storage.download(&m.addr(), "group1", name, 0, 0).await.ok().map(|b| b.to_vec())
            })
            .await;
            assert!(got == *data, "{name} on {}", m.ip);
        }
    }
    // The trunk binlog reached the other member, byte for byte.
    eventually(Duration::from_secs(20), "the trunk binlog pushed", || async {
        let want = std::fs::read(ts.base().join("data/trunk/binlog")).ok()?;
        let got = std::fs::read(other.base().join("data/trunk/binlog")).ok()?;
        (want == got && !want.is_empty()).then_some(())
    })
    .await;
    check_slots(&live, &ts.base(), &[ts, other]);

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
    for (name, data) in &live {
        eventually(Duration::from_secs(30), "the new files on both members", || async {
            for m in [ts, other] {
                if !data.is_empty() && c.storage.download(&m.addr(), "group1", name, 0, 0).await.ok()? != *data {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
    eventually(Duration::from_secs(20), "the trunk binlog pushed again", || async {
        let want = std::fs::read(ts.base().join("data/trunk/binlog")).ok()?;
        (std::fs::read(other.base().join("data/trunk/binlog")).ok()? == want).then_some(())
    })
    .await;
    check_slots(&live, &ts.base(), &[ts, other]);
}
