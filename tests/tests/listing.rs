//! `fdfs_list_files` (120 LIST_FILES): a group's live files from a storage's binlog. Files of
//! every kind (trunk slots, regular files, de-duplicated links and link slots, appender files,
//! renamed appenders, slaves, with and without metadata) go to a replicating pair, some are
//! deleted; each member lists exactly the live ones, the filters pick what they say, and
//! `--delete` removes what it lists on both members while every other file still downloads.

use std::collections::BTreeSet;
use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_core::protocol::listing::ListFilesReq;
use fdfs_core::protocol::storage::MetaOp;
use fdfs_e2e::{eventually, Cluster};

const TRUNK_TRACKER: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 64KB\ntrunk_file_size = 4MB\n\
     trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n";

fn content(n: usize, seed: u32) -> Vec<u8> {
    let tag = seed.to_be_bytes();
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ tag[i % 4]).collect()
}

/// What a member lists, through the client library.
async fn listed(c: &Client, addr: &str, req: &ListFilesReq) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let n = c
        .storage
        .list_files(addr, req, |f| {
            assert!(names.insert(f.filename.clone()), "{} listed twice", f.filename);
            true
        })
        .await
        .unwrap();
    assert_eq!(n as usize, names.len());
    names
}

/// Waits until `addr` lists exactly `want` (replication and deletes settle).
async fn until_listed(c: &Client, addr: &str, want: &BTreeSet<String>, within: Duration) {
    eventually(within, &format!("{addr} to list the {} expected files", want.len()), || async move {
        (listed(c, addr, &all()).await == *want).then_some(())
    })
    .await;
}

fn all() -> ListFilesReq {
    ListFilesReq { group: "group1".into(), ..Default::default() }
}

fn ids(out: &str) -> BTreeSet<String> {
    out.lines().map(|l| l.strip_prefix("group1/").unwrap_or_else(|| panic!("not a file ID: {l}")).to_owned()).collect()
}

#[tokio::test]
async fn each_member_lists_exactly_the_live_files_and_delete_removes_what_it_lists() {
    let cl = Cluster::start(TRUNK_TRACKER, &["127.0.0.157", "127.0.0.158"], "check_file_duplicate = 1\n").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let started = fdfs_core::timefmt::now_unix();
    // Until the trunk server is known small uploads are regular files: both kinds are wanted.
    let mut live = BTreeSet::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&content(100, 0))).await;
        let name = r.unwrap().filename;
        let in_slot = name.len() == 60;
        live.insert(name);
        if in_slot {
            break;
        }
        assert!(std::time::Instant::now() < until, "uploads never went into trunk slots");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seed = 1u32;
    let mut next = || {
        seed += 1;
        seed
    };
    // Trunk slots, on both members as sources: with what follows, about 1,000 files.
    for i in 0..880 {
        let to = if i % 2 == 0 { &a } else { &b };
        let ext = if i % 5 == 0 { "png" } else { "jpg" };
        let r = c.storage.upload(to, UploadKind::Normal, -1, ext, Content::Bytes(&content(500 + i, next()))).await;
        live.insert(r.unwrap().filename);
    }
    // Regular files (above the slot size), and de-duplicated copies of some: symbolic links
    // to one source, and link slots to one slot; the sources are no client's files.
    let big: Vec<Vec<u8>> = (0..40).map(|i| content(70_000 + i, next())).collect();
    for data in &big {
        live.insert(c.storage.upload(&a, UploadKind::Normal, -1, "jpg", Content::Bytes(data)).await.unwrap().filename);
    }
    let small_dup = content(2_000, next());
    for data in big.iter().take(10).chain(std::iter::repeat_n(&small_dup, 20)) {
        live.insert(c.storage.upload(&b, UploadKind::Normal, -1, "jpg", Content::Bytes(data)).await.unwrap().filename);
    }
    // Appender files, some appended to, some renamed to normal names (the old name goes).
    for i in 0..30 {
        let r = c.storage.upload(&a, UploadKind::Appender, -1, "log", Content::Bytes(&content(100, next()))).await;
        let name = r.unwrap().filename;
        c.storage.append(&a, &name, Content::Bytes(&content(50, next()))).await.unwrap();
        if i % 3 == 0 {
            live.insert(c.storage.regenerate_appender_filename(&a, &name).await.unwrap().filename);
        } else {
            live.insert(name);
        }
    }
    // Slaves of some masters, and metadata on some files (its `-m` file is not listed).
    let masters: Vec<String> = live.iter().filter(|n| n.ends_with(".jpg")).take(20).cloned().collect();
    for (i, m) in masters.iter().enumerate() {
        let r = c.storage.upload_slave(&a, m, "_150x150", "jpg", Content::Bytes(&content(300, next()))).await;
        live.insert(r.unwrap().filename);
        if i % 2 == 0 {
            let meta =
                vec![(b"width".to_vec(), b"150".to_vec()), (b"expire_days".to_vec(), i.to_string().into_bytes())];
            c.storage.set_metadata(&a, "group1", m, &meta, MetaOp::Overwrite).await.unwrap();
        }
    }
    // Deletes: every third file, de-duplicated copies and masters of slaves among them.
    let doomed: Vec<String> = live.iter().step_by(3).cloned().collect();
    for name in &doomed {
        c.delete(&format!("group1/{name}")).await.unwrap_or_else(|e| panic!("deleting {name}: {e}"));
        live.remove(name);
    }
    assert!(live.len() > 650, "{} live files", live.len());

    // Both members, once replication settled, list exactly the live files, each once.
    for addr in [&a, &b] {
        until_listed(&c, addr, &live, Duration::from_secs(60)).await;
    }
    // The tool: through the tracker's member, and on a named one, the same IDs.
    let (code, out, err) = cl.tool("fdfs_list_files", &["group1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&out), live);
    let (code, out, _) = cl.tool("fdfs_list_files", &["group1", "--storage", &b]);
    assert_eq!((code, ids(&out)), (0, live.clone()));

    // Filters.
    let png: BTreeSet<String> = live.iter().filter(|n| n.ends_with(".png")).cloned().collect();
    assert!(!png.is_empty());
    assert_eq!(ids(&cl.tool("fdfs_list_files", &["group1", "--ext", "png"]).1), png);
    let (_, out, _) = cl.tool("fdfs_list_files", &["group1", "--min-size", "70000"]);
    let big_live = ids(&out);
    assert!(!big_live.is_empty() && big_live.len() <= 50);
    for n in &big_live {
        let size = c.storage.file_info(&a, "group1", n, 0).await.unwrap().file_size;
        assert!(size >= 70_000, "{n}: {size}");
    }
    let later = (started + 3600).to_string();
    assert_eq!(cl.tool("fdfs_list_files", &["group1", "--created-after", &later]).1, "");
    assert_eq!(cl.tool("fdfs_list_files", &["group1", "--created-before", &(started - 3600).to_string()]).1, "");
    let soon = (fdfs_core::timefmt::now_unix() + 2).to_string();
    assert_eq!(ids(&cl.tool("fdfs_list_files", &["group1", "--created-before", &soon]).1), live);
    let m00: BTreeSet<String> = live.iter().filter(|n| n.starts_with("M00/00/")).cloned().collect();
    assert_eq!(ids(&cl.tool("fdfs_list_files", &["group1", "--prefix", "M00/00/"]).1), m00);
    // JSON Lines: sizes, times, CRC32 of normal files, and metadata.
    let (code, out, err) = cl.tool("fdfs_list_files", &["group1", "--json", "--metadata", "--ext", "jpg"]);
    assert_eq!(code, 0, "{err}");
    let mut with_meta = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["file_id"].as_str().unwrap();
        let name = id.strip_prefix("group1/").unwrap();
        assert!(live.contains(name), "{id}");
        let data = c.storage.download(&a, "group1", name, 0, 0).await.unwrap();
        assert_eq!(v["size"].as_u64(), Some(data.len() as u64), "{id}");
        assert!(v["create_time"].as_i64().unwrap() >= started - 1, "{id}");
        if let Some(crc) = v["crc32"].as_u64() {
            assert_eq!(crc as u32, crc32fast::hash(&data), "{id}");
        }
        if v["metadata"]["width"] == "150" {
            with_meta += 1;
        }
    }
    assert!(with_meta > 0, "metadata of the masters that kept it");
    // A group that is not the storage's is refused.
    let other = ListFilesReq { group: "group9".into(), ..Default::default() };
    assert!(c.storage.list_files(&a, &other, |_| true).await.is_err());

    // --delete: a dry run deletes nothing; then the PNGs go, from both members.
    let (code, out, err) = cl.tool("fdfs_list_files", &["group1", "--ext", "png", "--delete", "--dry-run"]);
    assert_eq!((code, ids(&out)), (0, png.clone()), "{err}");
    assert_eq!(ids(&cl.tool("fdfs_list_files", &["group1"]).1), live);
    let (code, out, err) = cl.tool("fdfs_list_files", &["group1", "--ext", "png", "--delete"]);
    assert_eq!((code, ids(&out)), (0, png.clone()), "{err}");
    assert!(err.contains(&format!("deleted {} of {} listed", png.len(), png.len())), "{err}");
    let kept: BTreeSet<String> = live.difference(&png).cloned().collect();
    for addr in [&a, &b] {
        until_listed(&c, addr, &kept, Duration::from_secs(30)).await;
        for n in &png {
            assert!(c.storage.download(addr, "group1", n, 0, 0).await.is_err(), "{n} deleted on {addr}");
        }
        for n in &kept {
            c.storage.download(addr, "group1", n, 0, 0).await.unwrap_or_else(|e| panic!("{n} on {addr}: {e}"));
        }
    }
}

/// Retention by metadata (`retention_metadata_key = expire_days`): each member deletes the
/// expired files it is the source of, the deletes replicate, a de-duplicated twin that did not
/// expire keeps its content; a dry run deletes nothing.
#[tokio::test]
async fn retention_deletes_exactly_the_expired_files_on_both_members() {
    let conf = "check_file_duplicate = 1\nretention_metadata_key = expire_days\nretention_interval = 1\n";
    let cl = Cluster::start(TRUNK_TRACKER, &["127.0.0.159", "127.0.0.160"], conf).await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let (mut kept, mut expired) = (Vec::new(), Vec::new());
    let twin = content(3_000, 7);
    for i in 0..60u32 {
        let to = if i % 2 == 0 { &a } else { &b };
        let data = if i < 2 { twin.clone() } else { content(400 + i as usize * 10, 1000 + i) };
        let name = c.storage.upload(to, UploadKind::Normal, -1, "jpg", Content::Bytes(&data)).await.unwrap().filename;
        // A third expire now, a third in 30 days, a third have no such metadata.
        let days = match i % 3 {
            0 => Some("0"),
            1 => Some("30"),
            _ => None,
        };
        if let Some(d) = days {
            let meta = vec![(b"expire_days".to_vec(), d.as_bytes().to_vec())];
            c.storage.set_metadata(to, "group1", &name, &meta, MetaOp::Merge).await.unwrap();
        }
        if days == Some("0") {
            expired.push(name);
        } else {
            kept.push((name, data));
        }
    }
    let want: BTreeSet<String> = kept.iter().map(|(n, _)| n.clone()).collect();
    for addr in [&a, &b] {
        until_listed(&c, addr, &want, Duration::from_secs(60)).await;
        for n in &expired {
            assert!(c.storage.download(addr, "group1", n, 0, 0).await.is_err(), "{n} expired");
        }
        for (n, data) in &kept {
            assert_eq!(&c.storage.download(addr, "group1", n, 0, 0).await.unwrap()[..], &data[..], "{n} on {addr}");
        }
    }

    let dry = Cluster::start("", &["127.0.0.161"], &format!("{conf}retention_dry_run = true\n")).await;
    let s = dry.storages[0].addr();
    let name = upload_expiring(&dry.client(), &s).await;
    // A pass has judged the file (and said so) before the list is looked at.
    let log = dry.storages[0].base().join("logs/storaged.log");
    eventually(Duration::from_secs(30), "a dry-run pass over the expired file", || async {
        std::fs::read_to_string(&log).ok()?.contains(&format!("would delete group1/{name}")).then_some(())
    })
    .await;
    assert_eq!(listed(&dry.client(), &s, &all()).await, BTreeSet::from([name]), "a dry run deletes nothing");
}

async fn upload_expiring(c: &Client, addr: &str) -> String {
    let name = c.storage.upload(addr, UploadKind::Normal, -1, "jpg", Content::Bytes(b"x")).await.unwrap().filename;
    let meta = vec![(b"expire_days".to_vec(), b"0".to_vec())];
    c.storage.set_metadata(addr, "group1", &name, &meta, MetaOp::Overwrite).await.unwrap();
    name
}

/// A C 6.16.1 storage does not have 120: the tool says so (exit 22, EINVAL as C answers an
/// unknown command) and the C storage serves on.
#[tokio::test]
async fn a_c_storage_refuses_listing_and_serves_on() {
    let Some(bin) = fdfs_e2e::c_fastdfs_bin("a_c_storage_refuses_listing_and_serves_on") else { return };
    let tracker = fdfs_e2e::CDaemon::tracker(&bin, "127.0.0.162", "");
    let port = fdfs_e2e::common_free_port(&["127.0.0.163"]);
    let storage = fdfs_e2e::CDaemon::storage(&bin, &tracker.addr, "group1", "127.0.0.163", port, "");
    let c = fdfs_e2e::client_for(&tracker.addr);
    let name = eventually(Duration::from_secs(30), "the C storage takes an upload", || {
        let (c, addr) = (&c, &storage.addr);
        async move { c.storage.upload(addr, UploadKind::Normal, -1, "txt", Content::Bytes(b"hello")).await.ok() }
    })
    .await
    .filename;
    let conf = storage.dir.path().join("client.conf");
    std::fs::write(&conf, format!("tracker_server = {}\nbase_path = /tmp\n", tracker.addr)).unwrap();
    let out = std::process::Command::new(fdfs_e2e::bin("fdfs_list_files"))
        .arg(&conf)
        .args(["group1", "--storage", &storage.addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(22), "{err}");
    assert!(err.contains("refused LIST_FILES"), "{err}");
    assert_eq!(&c.storage.download(&storage.addr, "group1", &name, 0, 0).await.unwrap()[..], b"hello");
}
