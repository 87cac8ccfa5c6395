//! Disk recovery: a storage whose store path lost its `data` directory (a replaced disk) does
//! not serve or join until it has copied that path's files back from a group member (26, 14),
//! regular files, appenders, slaves, metadata and trunk-resident files alike, with their
//! times; a disk carrying another storage's mark is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::protocol::storage::MetaOp;
use fdfs_e2e::{eventually, Cluster};

#[tokio::test]
async fn a_wiped_store_path_is_recovered_from_its_peer_before_it_serves() {
    let mut cl = Cluster::start(
        "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 64KB\ntrunk_file_size = 4MB\n",
        &["127.0.0.51", "127.0.0.52"],
        "subdir_count_per_path = 4\n",
    )
    .await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..40usize {
        // Small ones go into trunk slots once a trunk server is named, the rest are files.
        let data: Vec<u8> = (0..(i * 9973) % 300_000).map(|j| (j * 13 + i) as u8).collect();
        let to = if i % 2 == 0 { &a } else { &b };
        let r = c.storage.upload(to, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
        files.insert(r.filename, data);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(files.keys().any(|n| n.len() == 60), "some files in trunk slots");
    let master = files.keys().find(|n| n.len() == 44 && !files[*n].is_empty()).unwrap().clone();
    let slave = c.storage.upload_slave(&a, &master, "_s", "png", Content::Bytes(b"slave bytes")).await.unwrap();
    files.insert(slave.filename.clone(), b"slave bytes".to_vec());
    c.storage.set_metadata(&a, "group1", &master, &[(b"k".to_vec(), b"v".to_vec())], MetaOp::Overwrite).await.unwrap();
    let app = c.storage.upload(&a, UploadKind::Appender, -1, "log", Content::Bytes(b"one ")).await.unwrap();
    c.storage.append(&a, &app.filename, Content::Bytes(b"two")).await.unwrap();
    files.insert(app.filename.clone(), b"one two".to_vec());
    let gone = files.keys().find(|n| n.len() == 44 && !files[*n].is_empty() && **n != master).unwrap().clone();
    c.storage.delete(&a, "group1", &gone).await.unwrap();
    files.remove(&gone);
    // B holds everything.
    for (name, data) in &files {
        eventually(Duration::from_secs(30), "every file on B", || async {
            if data.is_empty() {
                return c.storage.file_info(&b, "group1", name, 0).await.ok().map(drop);
            }
            (c.storage.download(&b, "group1", name, 0, 0).await.ok()? == *data).then_some(())
        })
        .await;
    }
    let infos_before: Vec<_> = {
        let mut v = Vec::new();
        for name in files.keys() {
            v.push(c.storage.file_info(&b, "group1", name, 0).await.unwrap());
        }
        v
    };

    // A's disk is replaced: its store path is empty. It comes back, recovers, then joins.
    let base = cl.storages[0].base();
    let mark_before = std::fs::read_to_string(base.join("data/.fastdfs_vars")).unwrap();
    cl.storages[0].daemon.stop();
    std::fs::remove_dir_all(base.join("data/00")).unwrap();
    for hi in 1..4 {
        let _ = std::fs::remove_dir_all(base.join(format!("data/{hi:02X}")));
    }
    std::fs::remove_file(base.join("data/.fastdfs_vars")).unwrap();
    // The store path is the base path here: its data directory also holds the storage's own
    // state, so the disk's loss is its directory tree and mark.
    let tracker = cl.tracker.addr();
    cl.storages[0].restart(&tracker, false).await;
    let c = cl.client();
    for (name, data) in &files {
        if data.is_empty() {
            assert_eq!(c.storage.file_info(&a, "group1", name, 0).await.unwrap().file_size, 0, "{name}");
            continue;
        }
        let got = c.storage.download(&a, "group1", name, 0, 0).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} recovered");
    }
    for (name, before) in files.keys().zip(&infos_before) {
        let after = c.storage.file_info(&a, "group1", name, 0).await.unwrap();
        assert_eq!(
            (after.file_size, after.create_timestamp, after.crc32),
            (before.file_size, before.create_timestamp, before.crc32),
            "{name}"
        );
    }
    assert_eq!(c.storage.get_metadata(&a, "group1", &master).await.unwrap(), vec![(b"k".to_vec(), b"v".to_vec())]);
    assert!(c.storage.download(&a, "group1", &gone, 0, 0).await.is_err(), "a deleted file stays deleted");
    let log = std::fs::read_to_string(base.join("logs/storaged.log")).unwrap();
    assert!(log.contains("disk recovery: store path 0"), "{log}");
    assert!(!base.join("data/.recovery.flag").exists(), "recovery finished");
    assert_eq!(std::fs::read_to_string(base.join("data/.fastdfs_vars")).unwrap(), mark_before, "the same mark again");
}

/// A store path that carries another storage's mark (a disk moved from another machine) stops
/// the start with a message saying what to do, as C refuses it (`check_store_path_mark`).
#[tokio::test]
async fn a_disk_marked_for_another_storage_is_refused() {
    let mut cl = Cluster::start("", &["127.0.0.53"], "").await;
    let s = &mut cl.storages[0];
    let vars = s.base().join("data/.fastdfs_vars");
    let mark = std::fs::read_to_string(&vars).unwrap();
    assert!(mark.starts_with("store_path_mark=MTI3LjAuMC41Mw"), "C's layout: the address first: {mark}");
    let flag = std::fs::read_to_string(s.base().join("data/.data_init_flag")).unwrap();
    assert!(
        flag.contains(&format!("store_path_mark0={}", mark.trim().trim_start_matches("store_path_mark="))),
        "{flag}"
    );
    s.daemon.stop();
    std::fs::write(
        &vars,
        "store_path_mark=MTI3LjAuMC45OQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAANhZAAAAAMm9CWs\n",
    )
    .unwrap();
    let out = std::process::Command::new(fdfs_e2e::bin("fdfs_storaged"))
        .arg(&s.daemon.conf)
        .arg("foreground")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another storage's mark"), "{err}");
}

/// 26 FETCH_ONE_PATH_BINLOG in C's shape (the captured request): the "length unknown" header,
/// `c` lines of the files the store path holds, the text's length in 8 bytes, then the close.
#[tokio::test]
async fn the_store_path_file_list_has_cs_shape() {
    use std::io::{Read, Write};
    let cl = Cluster::start("", &["127.0.0.54"], "").await;
    let c = cl.client();
    let a = cl.storages[0].addr();
    let keep = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"kept")).await.unwrap();
    let gone = c.storage.upload(&a, UploadKind::Normal, -1, "txt", Content::Bytes(b"gone")).await.unwrap();
    c.storage
        .set_metadata(&a, "group1", &keep.filename, &[(b"a".to_vec(), b"b".to_vec())], MetaOp::Overwrite)
        .await
        .unwrap();
    c.storage.delete(&a, "group1", &gone.filename).await.unwrap();
    // The captured request: group1 and store path 0.
    let mut req = fdfs_core::protocol::Header::request(26u8, 17).encode().to_vec();
    req.extend_from_slice(b"group1\0\0\0\0\0\0\0\0\0\0\0");
    let mut s = std::net::TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&req).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(u64::from_be_bytes(all[..8].try_into().unwrap()), 1 << 58, "the unknown-length marker");
    assert_eq!(all[9], 0, "status");
    let (text, tail) = all[10..].split_at(all.len() - 18);
    assert_eq!(u64::from_be_bytes(tail.try_into().unwrap()), text.len() as u64, "the trailing length");
    let text = String::from_utf8(text.to_vec()).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .map(|f| {
            assert_eq!(f[1], "c", "{text}");
            f[2]
        })
        .collect();
    assert_eq!(names, [keep.filename.clone(), format!("{}-m", keep.filename)], "{text}");
}
