//! De-duplication built in (`check_file_duplicate = 1`): identical uploads get IDs of their
//! own but share one copy on disk (C's layout: a source file and symbolic links to it), through
//! the protocol, the module and replication; the last delete frees the space; the index is
//! rebuilt when lost and recounted after a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_e2e::{eventually, Cluster, StorageProc};

const DEDUP: &str = "check_file_duplicate = 1\n";

fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

async fn upload(c: &Client, addr: &str, data: &[u8]) -> String {
    c.storage.upload(addr, UploadKind::Normal, -1, "jpg", Content::Bytes(data)).await.unwrap().filename
}

/// CREATE_LINK (20) in group1 to `source` with a fresh name of extension `ext` (no client has
/// the command): the new filename, or the status it was refused with.
fn create_link(addr: &str, source: &str, ext: &str) -> Result<String, u8> {
    use fdfs_core::protocol::storage::{CreateLinkReq, FileIdResp};
    let req =
        CreateLinkReq { group: "group1".into(), ext: ext.into(), source_filename: source.into(), ..Default::default() };
    let (status, body) = fdfs_e2e::raw_request(addr, 20, &req.encode());
    if status != 0 {
        return Err(status);
    }
    let id = FileIdResp::decode(&body).expect("a file ID");
    assert_eq!(id.group, "group1");
    Ok(id.filename)
}

/// Every entry under a store path's data/HH/LL: (path, is a symbolic link).
fn entries(base: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let Ok(highs) = std::fs::read_dir(base.join("data")) else { return out };
    for h in highs.flatten().filter(|h| h.file_name().len() == 2) {
        for l in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(l.path()).into_iter().flatten().flatten() {
                out.push((e.path(), e.file_type().unwrap().is_symlink()));
            }
        }
    }
    out
}

/// Regular files in a store path holding exactly `data`.
fn copies(base: &Path, data: &[u8]) -> usize {
    entries(base)
        .iter()
        .filter(|(p, link)| !link && std::fs::metadata(p).is_ok_and(|m| m.len() == data.len() as u64))
        .filter(|(p, _)| std::fs::read(p).is_ok_and(|d| d == data))
        .count()
}

fn local(s: &StorageProc, name: &str) -> PathBuf {
    s.base().join("data").join(name.strip_prefix("M00/").unwrap())
}

/// The file a link names, as an absolute path (None: not a link).
fn target(s: &StorageProc, name: &str) -> Option<PathBuf> {
    let path = local(s, name);
    std::fs::symlink_metadata(&path).ok()?.file_type().is_symlink().then(|| std::fs::canonicalize(&path).ok())?
}

async fn served(c: &Client, s: &StorageProc, name: &str, data: &[u8]) -> bool {
    c.storage.download(&s.addr(), "group1", name, 0, 0).await.is_ok_and(|d| d == data)
}

#[tokio::test]
async fn identical_uploads_share_one_copy_until_the_last_delete() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], DEDUP).await;
    let (a, b) = (&cl.storages[0], &cl.storages[1]);
    let c = cl.client();
    // Large (streamed into a temp file) and small (kept in memory) contents.
    for (n, seed) in [(300_000, 1u8), (3_000, 2)] {
        let data = content(n, seed);
        let first = upload(&c, &a.addr(), &data).await;
        let second = upload(&c, &a.addr(), &data).await;
        assert_ne!(first, second, "each upload gets its own file ID");
        let source = target(a, &first).expect("a de-duplicated upload is a link");
        assert_eq!(target(a, &second).as_ref(), Some(&source), "both name the same content");
        assert_eq!(copies(&a.base(), &data), 1, "one copy on disk");
        // The content's own name is no client's: deleting it while links name it is refused.
        let source_name = format!("M00/{}", source.strip_prefix(a.base().join("data")).unwrap().display());
        let refused = c.storage.delete(&a.addr(), "group1", &source_name).await;
        assert_eq!(refused.unwrap_err().status(), fdfs_core::protocol::Status::EBUSY);
        assert!(served(&c, a, &second, &data).await, "the links still served");
        for name in [&first, &second] {
            assert!(served(&c, a, name, &data).await, "{name} downloads");
            let info = c.storage.file_info(&a.addr(), "group1", name, 0).await.unwrap();
            assert_eq!(info.file_size, data.len() as i64);
            assert_eq!(info.crc32 as u32, crc32fast::hash(&data), "{name}: the content's CRC32");
        }
        // Different content is not shared.
        let other = upload(&c, &a.addr(), &content(n, seed + 100)).await;
        assert_ne!(target(a, &other), Some(source.clone()));
        // An appender file changes, so it is never a link.
        let app = c.storage.upload(&a.addr(), UploadKind::Appender, -1, "jpg", Content::Bytes(&data)).await.unwrap();
        assert!(target(a, &app.filename).is_none(), "appender files are regular files");

        // The peer receives links as links (and the source once).
        eventually(Duration::from_secs(30), "links replicated as links", || async {
            let same = target(b, &first).is_some() && target(b, &first) == target(b, &second);
            let both = same && served(&c, b, &first, &data).await && served(&c, b, &second, &data).await;
            // The source, and the appender file: no more.
            (both && copies(&b.base(), &data) == 2).then_some(())
        })
        .await;
        // An upload of the same content to the peer links to the replicated source.
        let third = upload(&c, &b.addr(), &data).await;
        assert_eq!(target(b, &third), target(b, &first), "the peer de-duplicates against the replica");
        eventually(Duration::from_secs(30), "the peer's link replicated back", || async {
            (target(a, &third) == Some(source.clone())).then_some(())
        })
        .await;

        // Deleting one keeps the content for the others, everywhere.
        c.storage.delete(&a.addr(), "group1", &first).await.unwrap();
        eventually(Duration::from_secs(30), "the delete replicated", || async {
            (!local(b, &first).exists()).then_some(())
        })
        .await;
        for s in [a, b] {
            for name in [&second, &third] {
                assert!(served(&c, s, name, &data).await, "{name} still served by {} after one delete", s.ip);
            }
        }
        // The last delete frees the space, on both members.
        c.storage.delete(&a.addr(), "group1", &second).await.unwrap();
        assert!(served(&c, a, &third, &data).await);
        c.storage.delete(&b.addr(), "group1", &third).await.unwrap();
        c.storage.delete(&a.addr(), "group1", &app.filename).await.unwrap();
        for s in [a, b] {
            let what = format!("the content freed on {}", s.ip);
            eventually(Duration::from_secs(30), &what, || async { (copies(&s.base(), &data) == 0).then_some(()) })
                .await;
            let left: Vec<_> = entries(&s.base())
                .into_iter()
                .filter(|(p, link)| *link && std::fs::canonicalize(p).ok() == Some(source.clone()))
                .collect();
            assert!(left.is_empty(), "no link to the freed content on {}: {left:?}", s.ip);
        }
    }
}

/// The module serves de-duplicated files (links) as it serves any file.
#[tokio::test]
async fn the_module_serves_links() {
    let cl = Cluster::start("", &["127.0.0.2"], DEDUP).await;
    let s = &cl.storages[0];
    let c = cl.client();
    let data = content(50_000, 7);
    let names = [upload(&c, &s.addr(), &data).await, upload(&c, &s.addr(), &data).await];
    let ngx = fdfs_e2e::NginxProc::serving_store(&s.ip, &s.base());
    for name in &names {
        let resp = fdfs_e2e::get(&ngx.addr, &format!("/group1/{name}"));
        assert_eq!(resp.status, 200, "{name}");
        assert!(resp.body == data, "{name}: content through the module");
    }
    c.storage.delete(&s.addr(), "group1", &names[0]).await.unwrap();
    let resp = fdfs_e2e::get(&ngx.addr, &format!("/group1/{}", names[1]));
    assert_eq!(resp.status, 200, "the other link after one delete");
    assert!(resp.body == data);
}

/// CREATE_LINK (20) answered as C does: a new name for a file the storage holds, with its size
/// and CRC32; a source it does not hold is ENOENT.
#[tokio::test]
async fn create_link_names_an_existing_file_anew() {
    let cl = Cluster::start("", &["127.0.0.2"], DEDUP).await;
    let s = &cl.storages[0];
    let c = cl.client();
    let data = content(10_000, 9);
    let first = upload(&c, &s.addr(), &data).await;
    let source = fdfs_core::file_id::RemoteFilename::parse(
        target(s, &first)
            .unwrap()
            .strip_prefix(s.base().join("data"))
            .unwrap()
            .to_str()
            .map(|r| format!("M00/{r}"))
            .unwrap()
            .as_str(),
        Some(1),
    )
    .unwrap()
    .to_string();
    let linked = create_link(&s.addr(), &source, "jpg").expect("CREATE_LINK answered");
    assert!(served(&c, s, &linked, &data).await);
    let info = c.storage.file_info(&s.addr(), "group1", &linked, 0).await.unwrap();
    assert_eq!((info.file_size, info.crc32 as u32), (data.len() as i64, crc32fast::hash(&data)));
    // It counts as a reference: the first upload's delete keeps the content.
    c.storage.delete(&s.addr(), "group1", &first).await.unwrap();
    assert!(served(&c, s, &linked, &data).await);
    c.storage.delete(&s.addr(), "group1", &linked).await.unwrap();
    assert_eq!(copies(&s.base(), &data), 0, "the last reference freed it");
    assert_eq!(create_link(&s.addr(), &source, "jpg"), Err(2), "ENOENT for a source no longer here");
}

/// The index deleted while stopped is rebuilt at start with the same answers; after a kill -9
/// during de-duplicated uploads every acknowledged ID is served and references still add up
/// (deleting every link frees the content).
#[tokio::test]
async fn the_index_is_rebuilt_and_survives_a_crash() {
    let mut cl = Cluster::start("", &["127.0.0.2"], DEDUP).await;
    let t = cl.tracker.addr();
    let c = cl.client();
    let data = content(20_000, 11);
    let (x1, x2) = (upload(&c, &cl.storages[0].addr(), &data).await, upload(&c, &cl.storages[0].addr(), &data).await);
    let source = target(&cl.storages[0], &x1).unwrap();
    cl.storages[0].daemon.stop();
    std::fs::remove_file(cl.storages[0].base().join("data/dedup.redb")).unwrap();
    cl.storages[0].restart(&t, false).await;
    // A new client: the old one's pooled connections went with the daemon.
    let c = cl.client();
    let s = &cl.storages[0];
    let x3 = upload(&c, &s.addr(), &data).await;
    assert_eq!(target(s, &x3), Some(source.clone()), "the rebuilt index finds the content");
    // A damaged index does not stop the storage either: it is set aside and rebuilt.
    cl.storages[0].daemon.stop();
    std::fs::write(cl.storages[0].base().join("data/dedup.redb"), b"not a database").unwrap();
    cl.storages[0].restart(&t, false).await;
    let c = cl.client();
    let s = &cl.storages[0];
    let x4 = upload(&c, &s.addr(), &data).await;
    assert_eq!(target(s, &x4), Some(source.clone()), "rebuilt after damage, with the same answers");
    let aside = std::fs::read_dir(s.base().join("data"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("dedup.redb.damaged-"));
    assert!(aside, "the damaged index is kept aside");
    c.storage.delete(&s.addr(), "group1", &x4).await.unwrap();
    c.storage.delete(&s.addr(), "group1", &x1).await.unwrap();
    c.storage.delete(&s.addr(), "group1", &x2).await.unwrap();
    assert!(served(&c, s, &x3, &data).await, "rebuilt reference counts keep the content");

    // kill -9 under de-duplicated uploads from several clients.
    let mut acked = vec![x3];
    acked.extend(upload_until_kill9(&mut cl, &data).await);
    cl.storages[0].restart(&t, false).await;
    let c = cl.client();
    assert!(acked.len() > 5, "uploads ran before the kill: {}", acked.len());
    let s = &cl.storages[0];
    for name in &acked {
        assert!(served(&c, s, name, &data).await, "{name}: acknowledged before the kill, served after");
    }
    // Every link on disk (acknowledged, or made just before the kill and recorded at start) is
    // deleted through the protocol: the references add up exactly when that frees the content.
    let links: Vec<String> = entries(&s.base())
        .into_iter()
        .filter(|(_, link)| *link)
        .map(|(p, _)| format!("M00/{}", p.strip_prefix(s.base().join("data")).unwrap().display()))
        .collect();
    assert!(links.len() >= acked.len());
    for (i, name) in links.iter().enumerate() {
        assert_eq!(copies(&s.base(), &data), 1, "content kept while {} link(s) remain", links.len() - i);
        c.storage.delete(&s.addr(), "group1", name).await.unwrap();
    }
    assert_eq!(copies(&s.base(), &data), 0, "the last delete freed the content");
}

/// The first storage's disk replaced while it is stopped (its store path's tree and mark gone):
/// it recovers the store path from the other member before it is ACTIVE again.
async fn replace_first_disk(cl: &mut Cluster) {
    let base = cl.storages[0].base();
    cl.storages[0].daemon.stop();
    for hi in 0..4 {
        let _ = std::fs::remove_dir_all(base.join(format!("data/{hi:02X}")));
    }
    std::fs::remove_file(base.join("data/.fastdfs_vars")).unwrap();
    let tracker = cl.tracker.addr();
    cl.storages[0].restart(&tracker, false).await;
}

/// A replaced disk recovered from a member gets links back as links (one copy of the
/// content, not one per file ID), and the index counts them: the last delete frees it.
#[tokio::test]
async fn disk_recovery_brings_links_back_as_links() {
    let mut cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], DEDUP).await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let data = content(40_000, 21);
    let names = [upload(&c, &b, &data).await, upload(&c, &b, &data).await, upload(&c, &b, &data).await];
    for name in &names {
        eventually(Duration::from_secs(30), "every link on A", || async {
            target(&cl.storages[0], name).is_some().then_some(())
        })
        .await;
    }
    replace_first_disk(&mut cl).await;
    let c = cl.client();
    let s = &cl.storages[0];
    for name in &names {
        assert!(served(&c, s, name, &data).await, "{name} recovered");
        assert!(target(s, name).is_some(), "{name} recovered as a link");
    }
    assert_eq!(copies(&s.base(), &data), 1, "one copy recovered, not one per file ID");
    for name in &names[..2] {
        c.storage.delete(&a, "group1", name).await.unwrap();
    }
    assert!(served(&c, s, &names[2], &data).await, "recounted references keep the content");
    c.storage.delete(&a, "group1", &names[2]).await.unwrap();
    assert_eq!(copies(&s.base(), &data), 0, "the last delete frees it on the recovered disk");
}

/// With `store_slave_file_use_link` (the tracker's), a slave's content is a source like any
/// other: an upload of the same bytes links to it, and the content stays until both are gone.
#[tokio::test]
async fn slave_links_and_deduplicated_uploads_share_content() {
    let cl = Cluster::start("store_slave_file_use_link = true\n", &["127.0.0.2"], DEDUP).await;
    let s = &cl.storages[0];
    let c = cl.client();
    let master = upload(&c, &s.addr(), &content(8_000, 31)).await;
    let thumb = content(2_000, 32);
    // The storage learns the tracker's parameters with its beats.
    let slave = eventually(Duration::from_secs(20), "the slave stored as a link", || async {
        let id = c.upload_slave(&format!("group1/{master}"), "_150x150", "jpg", Content::Bytes(&thumb)).await.ok()?;
        let name = id.split_once('/').unwrap().1.to_owned();
        if target(s, &name).is_none() {
            c.delete(&id).await.ok()?;
            return None;
        }
        Some(name)
    })
    .await;
    let same = upload(&c, &s.addr(), &thumb).await;
    assert_eq!(target(s, &same), target(s, &slave), "the upload links to the slave's content");
    assert_eq!(copies(&s.base(), &thumb), 1);
    c.storage.delete(&s.addr(), "group1", &slave).await.unwrap();
    assert!(served(&c, s, &same, &thumb).await, "the slave's delete keeps the shared content");
    c.storage.delete(&s.addr(), "group1", &same).await.unwrap();
    assert_eq!(copies(&s.base(), &thumb), 0, "the last one frees it");
}

const TRUNK_TRACKER: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
     trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n";

/// The slot a trunk name is in, as it is on `s`'s disk: (is a link slot, the link's target).
fn slot_of(s: &StorageProc, name: &str) -> Option<(bool, Option<String>)> {
    let n = fdfs_core::file_id::RemoteFilename::parse(name, Some(1)).ok()?;
    let slot = fdfs_core::trunk::open(&n, &s.base()).ok()??;
    let target = fdfs_core::trunk::link_target(&slot, 1).ok()?.map(|t| t.to_string());
    Some((slot.kind == fdfs_core::trunk::SlotKind::Link, target))
}

/// Until the trunk server is known, uploads are regular files: waits until a small upload to
/// every member goes into a trunk slot.
async fn until_trunk_slots(c: &Client, cl: &Cluster) {
    let mut seed = 0u8;
    eventually(Duration::from_secs(30), "uploads into trunk slots on every member", || {
        seed = seed.wrapping_add(1);
        let addrs: Vec<String> = cl.storages.iter().map(|s| s.addr()).collect();
        async move {
            let mut all = true;
            for a in &addrs {
                all &= upload(c, a, &content(100, 200u8.wrapping_add(seed))).await.len() == 60;
            }
            all.then_some(())
        }
    })
    .await;
}

/// Uploads `data` from four clients to the first storage until it is killed with -9 (after
/// 0.7 s); the IDs acknowledged before.
async fn upload_until_kill9(cl: &mut Cluster, data: &[u8]) -> Vec<String> {
    let addr = cl.storages[0].addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, addr, data, stop) = (cl.client(), addr.clone(), data.to_vec(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.storage.upload(&addr, UploadKind::Normal, -1, "jpg", Content::Bytes(&data)).await {
                    Ok(r) => acked.push(r.filename),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    cl.storages[0].daemon.kill9();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

/// How many times `data` is in `s`'s trunk files.
fn copies_in_trunks(s: &StorageProc, data: &[u8]) -> usize {
    entries(&s.base())
        .iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n.len() == 6))
        .map(|(p, _)| std::fs::read(p).unwrap_or_default())
        .map(|t| t.windows(data.len()).filter(|w| *w == data).count())
        .sum()
}

/// Trunk mode, in C's layout there: a small upload's content goes into a slot under a name no
/// client is given and every file ID is a link slot (type `L`) whose text names it; a repeated
/// upload writes only a link slot. Served through the protocol and the module, replicated as
/// link slots, counted again from the binlog when the index is lost, freed at the last delete.
#[tokio::test]
async fn in_trunk_mode_identical_uploads_are_link_slots_to_one_slot() {
    let mut cl = Cluster::start(TRUNK_TRACKER, &["127.0.0.48", "127.0.0.49"], "check_file_duplicate = 1\n").await;
    let t = cl.tracker.addr();
    let c = cl.client();
    // Until the trunk server is known, uploads are regular files.
    until_trunk_slots(&c, &cl).await;
    let (a, b) = (&cl.storages[0], &cl.storages[1]);
    let data = content(3000, 21);
    let first = upload(&c, &a.addr(), &data).await;
    let second = upload(&c, &a.addr(), &data).await;
    let third = upload(&c, &b.addr(), &data).await;
    let (Some((true, Some(source))), Some((true, t2))) = (slot_of(a, &first), slot_of(a, &second)) else {
        panic!("de-duplicated uploads are link slots: {first} {second}");
    };
    assert_eq!(t2.as_ref(), Some(&source), "both name the same content");
    assert_eq!(slot_of(a, &source), Some((false, None)), "the content is a slot of its own");
    assert_eq!(source.len(), 60);
    eventually(Duration::from_secs(30), "the peer's upload linked to the replicated source", || async {
        (slot_of(b, &third) == Some((true, Some(source.clone())))).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "every link replicated as a link slot", || async {
        let all = [&first, &second, &third].iter().all(|n| slot_of(a, n) == slot_of(b, n));
        all.then_some(())
    })
    .await;
    for s in [a, b] {
        assert_eq!(copies_in_trunks(s, &data), 1, "{}: one copy of the content in its trunk files", s.ip);
        for name in [&first, &second, &third] {
            assert!(served(&c, s, name, &data).await, "{name} downloads from {}", s.ip);
            let info = c.storage.file_info(&s.addr(), "group1", name, 0).await.unwrap();
            assert_eq!(info.file_size, data.len() as i64, "{name}: the original's size");
            assert_eq!(info.crc32 as u32, crc32fast::hash(&data), "{name}: the content's CRC32");
        }
    }
    let refused = c.storage.delete(&a.addr(), "group1", &source).await;
    assert_eq!(refused.unwrap_err().status(), fdfs_core::protocol::Status::EBUSY, "the content's own name");
    // The link's name carries the link text's length (as C's readers need); fdfs_file_info
    // asks the storage and shows the original's size and CRC32.
    let (rc, out, _) = cl.tool("fdfs_file_info", &[&format!("group1/{first}")]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("GET FROM SERVER: true") && out.contains("file size: 3000\n"), "{out}");
    assert!(out.contains(&format!("file crc32: {} ", crc32fast::hash(&data))), "{out}");
    let (_, out, _) = cl.tool("fdfs_file_info", &[&format!("group1/{source}")]);
    assert!(out.contains("GET FROM SERVER: false") && out.contains("file size: 3000\n"), "{out}");

    // The module follows a link slot to the content's slot.
    let ngx = fdfs_e2e::NginxProc::serving_store(&a.ip, &a.base());
    for name in [&first, &second, &third] {
        let resp = fdfs_e2e::get(&ngx.addr, &format!("/group1/{name}"));
        assert_eq!(resp.status, 200, "{name}");
        assert!(resp.body == data, "{name}: the content through the module");
    }

    // The index lost while stopped: counted again from the binlog's link records.
    cl.storages[0].daemon.stop();
    std::fs::remove_file(cl.storages[0].base().join("data/dedup.redb")).unwrap();
    cl.storages[0].restart(&t, false).await;
    let c = cl.client();
    let (a, b) = (&cl.storages[0], &cl.storages[1]);
    let fourth = upload(&c, &a.addr(), &data).await;
    assert_eq!(slot_of(a, &fourth), Some((true, Some(source.clone()))), "the rebuilt index finds the content");
    // CREATE_LINK to the content's slot: a link slot under a fresh name, counted too.
    let fifth = create_link(&a.addr(), &source, "png").expect("CREATE_LINK to a trunk slot answered");
    assert_eq!(slot_of(a, &fifth), Some((true, Some(source.clone()))), "{fifth}: a link slot");
    assert!(fifth.ends_with(".png") && served(&c, a, &fifth, &data).await);
    // Deleting one keeps it for the others; the last delete frees its slot on both members.
    let names = [&first, &third, &fifth, &second, &fourth];
    for (i, name) in names.iter().enumerate() {
        c.storage.delete(&a.addr(), "group1", name).await.unwrap();
        eventually(Duration::from_secs(30), "the delete replicated", || async {
            (slot_of(b, name).is_none()).then_some(())
        })
        .await;
        for s in [a, b] {
            for other in &names[i + 1..] {
                assert!(served(&c, s, other, &data).await, "{other} still served by {} after {name}", s.ip);
            }
        }
    }
    drop(ngx);
    for s in [a, b] {
        eventually(Duration::from_secs(30), "the content's slot freed", || async {
            (slot_of(s, &source).is_none()).then_some(())
        })
        .await;
        assert_eq!(copies_in_trunks(s, &data), 1, "a freed slot keeps its bytes until reused, as C");
    }
}

/// kill -9 under de-duplicated uploads into trunk slots: every acknowledged ID is served after
/// the restart, and the references recounted from the binlog add up: deleting every link slot
/// the binlog names frees the content's slot exactly at the last one.
#[tokio::test]
async fn in_trunk_mode_a_crash_leaves_counts_that_add_up() {
    let mut cl = Cluster::start(TRUNK_TRACKER, &["127.0.0.50"], "check_file_duplicate = 1\n").await;
    let t = cl.tracker.addr();
    let c = cl.client();
    let addr = cl.storages[0].addr();
    until_trunk_slots(&c, &cl).await;
    let data = content(2000, 33);
    let x0 = upload(&c, &addr, &data).await;
    let Some((true, Some(source))) = slot_of(&cl.storages[0], &x0) else { panic!("{x0}: a link slot") };
    let mut acked = vec![x0];
    acked.extend(upload_until_kill9(&mut cl, &data).await);
    cl.storages[0].restart(&t, false).await;
    let c = cl.client();
    let s = &cl.storages[0];
    assert!(acked.len() > 5, "uploads ran before the kill: {}", acked.len());
    for name in &acked {
        assert!(served(&c, s, name, &data).await, "{name}: acknowledged before the kill, served after");
    }
    // Every link slot the binlog records (acknowledged, or recorded just before the kill).
    let binlog = std::fs::read_to_string(s.base().join("data/sync/binlog.000")).unwrap();
    let mut links: Vec<String> = binlog
        .lines()
        .filter_map(|l| l.split(' ').collect::<Vec<_>>().get(1..3).map(|f| (f[0] == "L").then(|| f[1].to_owned())))
        .flatten()
        .filter(|n| slot_of(s, n) == Some((true, Some(source.clone()))))
        .collect();
    links.dedup();
    assert!(acked.iter().all(|n| links.contains(n)), "every acknowledged ID is recorded as a link");
    for (i, name) in links.iter().enumerate() {
        assert_eq!(slot_of(s, &source), Some((false, None)), "content kept while {} link(s) remain", links.len() - i);
        c.storage.delete(&s.addr(), "group1", name).await.unwrap();
    }
    assert_eq!(slot_of(s, &source), None, "the last delete freed the content's slot");
}

/// Disk recovery in trunk mode: the content's slot comes back as a slot and every link slot as
/// a link slot naming it (one copy, not one per file ID), counted: the last delete frees it.
#[tokio::test]
async fn in_trunk_mode_disk_recovery_brings_link_slots_back() {
    let mut cl = Cluster::start(TRUNK_TRACKER, &["127.0.0.48", "127.0.0.49"], "check_file_duplicate = 1\n").await;
    let c = cl.client();
    until_trunk_slots(&c, &cl).await;
    let b = cl.storages[1].addr();
    let data = content(5000, 41);
    let names = [upload(&c, &b, &data).await, upload(&c, &b, &data).await, upload(&c, &b, &data).await];
    let Some((true, Some(source))) = slot_of(&cl.storages[1], &names[0]) else { panic!("a link slot") };
    for name in &names {
        eventually(Duration::from_secs(30), "every link slot on A", || async {
            (slot_of(&cl.storages[0], name) == Some((true, Some(source.clone())))).then_some(())
        })
        .await;
    }
    replace_first_disk(&mut cl).await;
    let c = cl.client();
    let s = &cl.storages[0];
    for name in &names {
        assert!(served(&c, s, name, &data).await, "{name} recovered");
        assert_eq!(slot_of(s, name), Some((true, Some(source.clone()))), "{name} recovered as a link slot");
    }
    assert_eq!(copies_in_trunks(s, &data), 1, "one copy recovered, not one per file ID");
    for name in &names[..2] {
        c.storage.delete(&s.addr(), "group1", name).await.unwrap();
    }
    assert!(served(&c, s, &names[2], &data).await, "recounted references keep the content");
    c.storage.delete(&s.addr(), "group1", &names[2]).await.unwrap();
    assert_eq!(slot_of(s, &source), None, "the last delete frees it on the recovered disk");
}
