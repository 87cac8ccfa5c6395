//! `delete_unused_trunk_files` (#30): a trunk file whose every file was deleted goes from the
//! disk of every member, while every live file elsewhere still reads, through the protocol and
//! the module; also when the trunk server is killed -9 right after the deletes and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_core::file_id::RemoteFilename;
use fdfs_core::trunk::space::{FreeSpace, SpaceRecord, TrunkSettings};
use fdfs_e2e::{eventually, Cluster, StorageProc};

const TRACKER_CONF: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
     trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\ndelete_unused_trunk_files = true\n";

fn content(n: usize, seed: u32) -> Vec<u8> {
    (0..n).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).to_be_bytes()[0]).collect()
}

/// The trunk file holding trunk name `name` in the store path `base`.
fn trunk_file(base: &Path, name: &str) -> PathBuf {
    let r = RemoteFilename::parse(name, Some(1)).unwrap();
    let loc = r.trunk_location().expect("a trunk name");
    base.join(format!("data/{:02X}/{:02X}/{:06}", r.high, r.low, loc.trunk_id))
}

/// The live trunk names by the trunk file (relative to the store path) they are in.
fn by_trunk_file(live: &BTreeMap<String, Vec<u8>>) -> BTreeMap<PathBuf, Vec<String>> {
    let mut files: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for name in live.keys().filter(|n| n.len() == 60) {
        files.entry(trunk_file(Path::new(""), name)).or_default().push(name.clone());
    }
    files
}

async fn upload(c: &Client, to: &StorageProc, data: &[u8]) -> String {
    let r = c.storage.upload(&to.addr(), UploadKind::Normal, -1, "jpg", Content::Bytes(data)).await;
    r.unwrap_or_else(|e| panic!("upload to {}: {e}", to.ip)).filename
}

/// Every file of `live` reads back from every member with its bytes.
async fn all_read_back(c: &Client, members: &[&StorageProc], live: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in live {
        for m in members {
            eventually(Duration::from_secs(30), "a live file on every member", || async {
                (c.storage.download(&m.addr(), "group1", name, 0, 0).await.ok()? == *data).then_some(())
            })
            .await;
        }
    }
}

/// Deletes every file of trunk file `victim` (through both members in turn) and forgets them.
async fn delete_all_in(c: &Client, members: &[&StorageProc], victim: &Path, live: &mut BTreeMap<String, Vec<u8>>) {
    let names = by_trunk_file(live).remove(victim).expect("files in the victim");
    for (i, name) in names.iter().enumerate() {
        let via = members[i % members.len()];
        c.storage.delete(&via.addr(), "group1", name).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
        live.remove(name);
    }
}

async fn gone_everywhere(members: &[&StorageProc], victim: &Path) {
    for m in members {
        let path = m.base().join(victim);
        eventually(Duration::from_secs(90), "the emptied trunk file removed", || async {
            (!path.exists()).then_some(())
        })
        .await;
    }
}

/// The free space the trunk binlog under `base` describes.
fn replayed(base: &Path) -> FreeSpace {
    let settings = TrunkSettings {
        slot_min_size: 256,
        slot_max_size: 1 << 20,
        alignment: 256,
        trunk_file_size: 4 << 20,
        merge: true,
    };
    let mut f = FreeSpace::new(settings, 0);
    let text = std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap_or_default();
    for line in text.lines() {
        f.replay(&SpaceRecord::parse(line).unwrap_or_else(|| panic!("trunk binlog line {line:?}")));
    }
    f
}

#[tokio::test]
async fn a_trunk_file_emptied_by_deletes_goes_from_every_member_and_live_files_stay() {
    let mut cluster =
        Cluster::start(TRACKER_CONF, &["127.0.0.164", "127.0.0.165"], "subdir_count_per_path = 4\n").await;
    let c = cluster.client();
    let server = eventually(Duration::from_secs(30), "a trunk server", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        list.iter().find(|s| s.if_trunk_server).map(|s| s.id.clone())
    })
    .await;
    let ts_i = if server == cluster.storages[0].id { 0 } else { 1 };

    // Members learn the trunk server from the leader's next answer: until then small files are
    // regular files (kept, they must stay too).
    let mut live: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for m in &cluster.storages {
        for tries in 0.. {
            assert!(tries < 200, "{} never put a small file into a trunk slot", m.ip);
            let data = content(10, tries);
            let name = upload(&c, m, &data).await;
            let trunk = name.len() == 60;
            live.insert(name, data);
            if trunk {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // ~100 KB files: 40 a 4 MiB trunk file, so three or four trunk files.
    for i in 0..120u32 {
        let data = content(90_000 + (i as usize * 7_919) % 12_000, i);
        let to = &cluster.storages[i as usize % 2];
        live.insert(upload(&c, to, &data).await, data);
    }
    let (a, b) = (&cluster.storages[0], &cluster.storages[1]);
    all_read_back(&c, &[a, b], &live).await;
    let files = by_trunk_file(&live);
    assert!(files.len() >= 3, "the uploads filled several trunk files: {:?}", files.keys());

    // Every file of the first trunk file is deleted: it goes on both members.
    let victim = files.keys().next().unwrap().clone();
    let victim_id = victim.file_name().unwrap().to_str().unwrap().parse::<u32>().unwrap();
    delete_all_in(&c, &[a, b], &victim, &mut live).await;
    gone_everywhere(&[a, b], &victim).await;
    let ts = &cluster.storages[ts_i];
    let free = replayed(&ts.base());
    assert!(
        free.free_blocks().all(|blk| blk.trunk_id != victim_id),
        "the removed trunk file has no free space left in the trunk binlog"
    );
    all_read_back(&c, &[a, b], &live).await;

    // The module serves every live trunk file from a member's copy.
    let ngx = fdfs_e2e::NginxProc::serving_store(&b.ip, &b.base());
    for (name, data) in live.iter().filter(|(n, _)| n.len() == 60) {
        let resp = fdfs_e2e::http(&ngx.addr, "GET", format!("/group1/{name}").as_bytes(), &[]);
        assert_eq!(resp.status, 200, "{name} through the module");
        assert!(resp.body == *data, "{name}: its bytes through the module");
    }

    // New small files go into trunk slots again, never into the removed file.
    for i in 0..20u32 {
        let data = content(3_000 + i as usize, 1_000 + i);
        let name = upload(&c, &cluster.storages[i as usize % 2], &data).await;
        if name.len() == 60 {
            assert_ne!(trunk_file(Path::new(""), &name), victim, "a slot in the removed trunk file");
        }
        live.insert(name, data);
    }
    all_read_back(&c, &[a, b], &live).await;

    // A second trunk file emptied, and the trunk server killed -9 at once: after its restart
    // the file goes all the same (the emptied file is found again when the role is taken).
    let files = by_trunk_file(&live);
    let second = files.keys().find(|f| **f != victim).unwrap().clone();
    delete_all_in(&c, &[a, b], &second, &mut live).await;
    // The frees reached the other member's copy of the trunk binlog (whichever member is trunk
    // server after the kill must know them; one pushed too late is space C loses as well).
    let other = &cluster.storages[1 - ts_i];
    eventually(Duration::from_secs(20), "the trunk binlog pushed", || async {
        let want = std::fs::read(ts.base().join("data/trunk/binlog")).ok()?;
        (std::fs::read(other.base().join("data/trunk/binlog")).ok()? == want).then_some(())
    })
    .await;
    let tracker = cluster.tracker.addr();
    cluster.storages[ts_i].restart(&tracker, true).await;
    let (a, b) = (&cluster.storages[0], &cluster.storages[1]);
    gone_everywhere(&[a, b], &second).await;
    all_read_back(&c, &[a, b], &live).await;
    for m in [a, b] {
        assert!(!m.base().join(&victim).exists(), "the first removed file stays removed on {}", m.ip);
    }
    for (name, data) in live.iter().filter(|(n, _)| n.len() == 60) {
        let resp = fdfs_e2e::http(&ngx.addr, "GET", format!("/group1/{name}").as_bytes(), &[]);
        assert!(resp.status == 200 && resp.body == *data, "{name} through the module after the restart");
    }
    let remaining: BTreeSet<PathBuf> = by_trunk_file(&live).into_keys().collect();
    for f in &remaining {
        for m in [a, b] {
            assert!(m.base().join(f).exists(), "trunk file {} with live files kept on {}", f.display(), m.ip);
        }
    }
}
