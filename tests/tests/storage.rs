//! fdfs_storaged as a real process behind a real fdfs_trackerd: every client command, every
//! tool, two store paths, hostile input, a crash in the middle of an upload, and a 1 GiB
//! round trip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fdfs_core::client::{ClientError, Content, UploadKind};
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::storage::{file_info_flags, AppendHead, MetaOp, ModifyHead, StreamedHead, UploadHead};
use fdfs_core::protocol::{Command, Header, Status};
use fdfs_e2e::{eventually, Cluster, StorageProc};

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Status {
    r.unwrap_err().status()
}

fn meta(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

#[tokio::test]
async fn every_client_command() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let c = cl.client();
    let data = payload(100_000, 1);

    // Upload, download whole / ranges / to the end / clamped.
    let id = c.upload(UploadKind::Normal, None, "jpg", Content::Bytes(&data)).await.unwrap();
    let fid = FileId::parse(&id).unwrap();
    assert!(id.starts_with("group1/M00/") && id.ends_with(".jpg") && fid.remote.to_string().len() == 44, "{id}");
    let info = fid.remote.info();
    assert_eq!((info.size, info.crc32), (Some(100_000), crc32fast::hash(&data)));
    assert_eq!(info.source.to_string(), "127.0.0.2");
    assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], &data[..]);
    assert_eq!(&c.download(&id, 10, 5).await.unwrap()[..], &data[10..15]);
    assert_eq!(&c.download(&id, 99_990, 0).await.unwrap()[..], &data[99_990..]);
    assert_eq!(&c.download(&id, 99_990, 500).await.unwrap()[..], &data[99_990..], "clamped to the end");
    assert_eq!(status_of(c.download(&id, 100_000, 0).await), Status::EINVAL, "offset at the end");

    // The stored file carries the name's timestamp as mtime; file info agrees with the name.
    let fi = c.query_file_info(&id, 0).await.unwrap();
    assert_eq!(
        (fi.file_size, fi.create_timestamp, fi.crc32_u32()),
        (100_000, info.create_timestamp as i64, info.crc32)
    );
    assert_eq!(fi.source_ip, "127.0.0.2");

    // An empty file uploads; downloading it is EINVAL as in FastDFS ≥ 6.15.4.
    let empty = c.upload(UploadKind::Normal, None, "", Content::Bytes(b"")).await.unwrap();
    assert_eq!(FileId::parse(&empty).unwrap().remote.name.len(), 34, "7 random digits when there is no extension");
    assert_eq!(status_of(c.download(&empty, 0, 0).await), Status::EINVAL);

    // Metadata: overwrite, merge (new values win, result sorted), get, overwrite with nothing.
    c.set_metadata(&id, &meta(&[("width", "160"), ("height", "80")]), MetaOp::Overwrite).await.unwrap();
    c.set_metadata(&id, &meta(&[("width", "320"), ("author", "me")]), MetaOp::Merge).await.unwrap();
    assert_eq!(c.get_metadata(&id).await.unwrap(), meta(&[("author", "me"), ("height", "80"), ("width", "320")]));
    c.set_metadata(&id, &[], MetaOp::Overwrite).await.unwrap();
    assert_eq!(status_of(c.get_metadata(&id).await), Status::ENOENT);
    assert_eq!(status_of(c.get_metadata(&empty).await), Status::ENOENT, "no metadata is ENOENT, not empty");

    // Slave files sit next to the master with the master's random digits.
    let slave = c.upload_slave(&id, "_150x150", "png", Content::Bytes(b"thumbnail")).await.unwrap();
    let master_name = fid.remote.to_string();
    assert_eq!(slave, format!("group1/{}_150x150.png", &master_name[..master_name.len() - 4]));
    assert_eq!(&c.download(&slave, 0, 0).await.unwrap()[..], b"thumbnail");
    let si = c.query_file_info(&slave, 0).await.unwrap();
    assert_eq!(si.crc32_u32(), crc32fast::hash(b"thumbnail"), "slave CRC is computed");
    assert_eq!(status_of(c.upload_slave(&id, "_150x150", "png", Content::Bytes(b"x")).await), Status::EEXIST);

    // Appender: append, modify, truncate, file info computes the CRC, regenerate.
    let app = c.upload(UploadKind::Appender, None, "txt", Content::Bytes(b"hello ")).await.unwrap();
    c.append(&app, Content::Bytes(b"world")).await.unwrap();
    c.append(&app, Content::Bytes(b"")).await.unwrap();
    assert_eq!(&c.download(&app, 0, 0).await.unwrap()[..], b"hello world");
    c.modify(&app, 6, Content::Bytes(b"W")).await.unwrap();
    c.modify(&app, 11, Content::Bytes(b"!!")).await.unwrap();
    assert_eq!(&c.download(&app, 0, 0).await.unwrap()[..], b"hello World!!");
    assert_eq!(status_of(c.modify(&app, 99, Content::Bytes(b"x")).await), Status::EINVAL, "offset past the end");
    c.truncate(&app, 11).await.unwrap();
    let ai = c.query_file_info(&app, 0).await.unwrap();
    assert_eq!((ai.file_size, ai.crc32_u32()), (11, crc32fast::hash(b"hello World")));
    assert_eq!(c.query_file_info(&app, file_info_flags::NO_CRC32).await.unwrap().crc32, 0);
    assert_eq!(status_of(c.append(&id, Content::Bytes(b"x")).await), Status::EINVAL, "not an appender");
    let normal = c.regenerate_appender_filename(&app).await.unwrap();
    let ni = FileId::parse(&normal).unwrap().remote.info();
    assert_eq!((ni.size, ni.crc32), (Some(11), crc32fast::hash(b"hello World")));
    assert_eq!(&c.download(&normal, 0, 0).await.unwrap()[..], b"hello World");
    assert_eq!(status_of(c.download(&app, 0, 0).await), Status::ENOENT, "the old name is gone");

    // Delete: the file and its metadata; then ENOENT.
    c.set_metadata(&normal, &meta(&[("k", "v")]), MetaOp::Overwrite).await.unwrap();
    c.delete(&normal).await.unwrap();
    assert_eq!(status_of(c.delete(&normal).await), Status::ENOENT);
    assert_eq!(status_of(c.download(&normal, 0, 0).await), Status::ENOENT);

    // Storage-level checks: wrong group, bad names, store path out of range, active test.
    let s = &c.storage;
    let addr = cl.storages[0].addr();
    assert_eq!(status_of(s.download(&addr, "group9", &master_name, 0, 0).await), Status::EINVAL);
    for bad in ["M00/00/00/../../../../etc/passwd", "M01/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg", "M00/00/00/short"] {
        assert_eq!(status_of(s.download(&addr, "group1", bad, 0, 0).await), Status::EINVAL, "{bad}");
        assert_eq!(status_of(s.delete(&addr, "group1", bad).await), Status::EINVAL, "{bad}");
    }
    assert_eq!(status_of(s.upload(&addr, UploadKind::Normal, 5, "", Content::Bytes(b"x")).await), Status::EINVAL);
    s.active_test(&addr).await.unwrap();

    // The binlog recorded every change, in FastDFS's format (each before its answer).
    let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
    let ops: Vec<&str> = binlog.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(ops, ["C", "C", "C", "U", "D", "C", "C", "A", "M", "M", "T", "R", "C", "D", "D"], "{binlog}");
    assert!(binlog.contains(&format!(" A {} 6 5\n", FileId::parse(&app).unwrap().remote)), "{binlog}");
    assert!(binlog.contains(&format!(
        " R {} {}\n",
        FileId::parse(&normal).unwrap().remote,
        FileId::parse(&app).unwrap().remote
    )));
}

#[tokio::test]
async fn every_tool() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("photo.jpg");
    let data = payload(300_000, 7);
    std::fs::write(&src, &data).unwrap();
    let srcs = src.to_str().unwrap();

    let (rc, id, err) = cl.tool("fdfs_upload_file", &[srcs]);
    assert_eq!(rc, 0, "{err}");
    let id = id.trim().to_owned();
    assert!(id.starts_with("group1/M00/") && id.ends_with(".jpg"), "{id}");

    let (rc, out, _) = cl.tool("fdfs_file_info", &[&id]);
    assert_eq!(rc, 0);
    let crc = crc32fast::hash(&data);
    assert!(
        out.starts_with(
            "GET FROM SERVER: false\n\nfile type: normal\nsource storage id: 0\nsource ip address: 127.0.0.2\n"
        ),
        "{out}"
    );
    assert!(out.contains(&format!("file size: 300000\nfile crc32: {crc} (0x{crc:08x})\n\n")), "{out}");
    // Times in local time, as C prints them.
    let shanghai = std::process::Command::new(fdfs_e2e::bin("fdfs_file_info"))
        .env("TZ", "Asia/Shanghai")
        .args([cl.client_conf.to_str().unwrap(), &id])
        .output()
        .unwrap();
    let named = FileId::parse(&id).unwrap().remote.info().create_timestamp as i64;
    let want = fdfs_core::timefmt::datetime(named + 8 * 3600);
    assert!(
        String::from_utf8_lossy(&shanghai.stdout).contains(&format!("file create timestamp: {want}\n")),
        "{}",
        String::from_utf8_lossy(&shanghai.stdout)
    );
    let out = std::process::Command::new(fdfs_e2e::bin("fdfs_crc32")).arg(&src).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{crc:x}"), "C prints it in hex");

    // Ours: slave uploads and metadata from the command line.
    let thumb = dir.path().join("thumb.png");
    std::fs::write(&thumb, b"a thumbnail").unwrap();
    let (rc, slave, err) = cl.tool("fdfs_upload_slave", &[&id, "_150x150", thumb.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    let slave = slave.trim().to_owned();
    assert_eq!(slave, format!("{}_150x150.png", &id[..id.len() - ".jpg".len()]), "named after its master");
    let (rc, _, err) = cl.tool("fdfs_set_metadata", &[&id, "O", "width=1024", "height=768"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = cl.tool("fdfs_set_metadata", &[&id, "M", "width=800"]);
    assert_eq!(rc, 0, "{err}");
    let (rc, meta, _) = cl.tool("fdfs_get_metadata", &[&id]);
    assert_eq!((rc, meta.as_str()), (0, "height=768\nwidth=800\n"), "merged, sorted by name");
    let (rc, _, err) = cl.tool("fdfs_set_metadata", &[&id, "X", "a=b"]);
    assert!(rc != 0 && err.contains("Usage: fdfs_set_metadata"), "{err}");

    let dst = dir.path().join("copy.jpg");
    let (rc, _, err) = cl.tool("fdfs_download_file", &[&id, dst.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    let part = dir.path().join("part.bin");
    let (rc, _, _) = cl.tool("fdfs_download_file", &[&id, part.to_str().unwrap(), "1000", "24"]);
    assert_eq!(rc, 0);
    assert_eq!(std::fs::read(&part).unwrap(), &data[1000..1024]);
    let tail = dir.path().join("tail.bin");
    let (rc, _, err) = cl.tool("fdfs_download_file", &[&id, tail.to_str().unwrap(), "1000"]);
    assert_eq!(rc, 0, "an offset without a length: to the end ({err})");
    assert_eq!(std::fs::read(&tail).unwrap(), &data[1000..]);

    let (rc, app, _) = cl.tool("fdfs_upload_appender", &[srcs]);
    assert_eq!(rc, 0);
    let app = app.trim().to_owned();
    let (rc, _, err) = cl.tool("fdfs_append_file", &[&app, srcs]);
    assert_eq!(rc, 0, "{err}");
    let (rc, out, _) = cl.tool("fdfs_file_info", &[&app]);
    assert_eq!(rc, 0);
    let both = [data.clone(), data.clone()].concat();
    assert!(out.starts_with("GET FROM SERVER: true\n\nfile type: appender\n"), "{out}");
    assert!(out.contains(&format!("file size: 600000\nfile crc32: {} ", crc32fast::hash(&both))), "{out}");
    // C 6.16's -n: the storage skips the CRC32 of an appender file.
    let (rc, out, err) = cl.tool("fdfs_file_info", &["-n", &app]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("file size: 600000\nfile crc32: 0 (0x00000000)"), "{out}");
    let (rc, _, err) = cl.tool("fdfs_file_info", &["-x", &app]);
    assert!(rc != 0 && err.contains("Usage: fdfs_file_info [options]"), "{err}");
    let (rc, normal, _) = cl.tool("fdfs_regenerate_filename", &[&app]);
    assert_eq!(rc, 0);
    let (rc, out, _) = cl.tool("fdfs_file_info", &[normal.trim()]);
    assert!(rc == 0 && out.contains("file type: normal") && out.contains("file size: 600000"), "{out}");

    let (rc, _, _) = cl.tool("fdfs_delete_file", &[&id]);
    assert_eq!(rc, 0);
    let (rc, _, err) = cl.tool("fdfs_delete_file", &[&id]);
    assert_eq!(rc, 2);
    assert_eq!(err.trim(), "delete file fail, error no: 2, error info: No such file or directory");
    let (rc, _, err) = cl.tool("fdfs_download_file", &[&id, dst.to_str().unwrap()]);
    assert_eq!(rc, 2, "{err}");
    // Direct upload to a named storage, with a store path index.
    let (rc, id2, err) = cl.tool("fdfs_upload_file", &[srcs, &cl.storages[0].addr(), "0"]);
    assert_eq!(rc, 0, "{err}");
    assert!(id2.starts_with("group1/M00/"));
    // The counters reach the tracker and fdfs_monitor (with the next stat report).
    let out = fdfs_e2e::eventually(Duration::from_secs(15), "the counters in fdfs_monitor", || {
        let (rc, out, _) = cl.tool("fdfs_monitor", &[]);
        // Three files and the slave (C counts slave uploads as uploads).
        async move { (rc == 0 && out.contains("\t\tsuccess_upload_count = 4\n")).then_some(out) }
    })
    .await;
    assert!(out.contains("\t\tsuccess_upload_count = 4\n"), "{out}");
    assert!(out.contains("\t\tsuccess_delete_count = 1\n"), "{out}");
}

#[tokio::test]
async fn two_store_paths() {
    let extra_dir = tempfile::tempdir().unwrap();
    let conf = format!("store_path_count = 2\nstore_path1 = {}\n", extra_dir.path().display());
    let cl = Cluster::start("", &["127.0.0.2"], &conf).await;
    let c = cl.client();
    let mut prefixes = std::collections::BTreeSet::new();
    let mut ids = Vec::new();
    for i in 0..6u8 {
        let data = payload(1000 + i as usize, i);
        // The tracker assigns paths round robin.
        let id = c.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await.unwrap();
        prefixes.insert(id[7..10].to_owned());
        ids.push((id, data));
    }
    assert_eq!(prefixes.into_iter().collect::<Vec<_>>(), ["M00", "M01"]);
    for (id, data) in &ids {
        assert_eq!(&c.download(id, 0, 0).await.unwrap()[..], &data[..]);
        if id.contains("/M01/") {
            let f = FileId::parse(id).unwrap();
            assert!(extra_dir.path().join(f.remote.relative_path()).is_file());
        }
    }
    let addr = cl.storages[0].addr();
    let r = c.storage.upload(&addr, UploadKind::Normal, 1, "txt", Content::Bytes(b"on M01")).await.unwrap();
    assert!(r.filename.starts_with("M01/"));
    assert_eq!(
        status_of(c.storage.upload(&addr, UploadKind::Normal, 2, "txt", Content::Bytes(b"x")).await),
        Status::EINVAL
    );
}

/// Sends a raw request and returns the answer header (None if the connection just closed).
fn raw(addr: &str, bytes: &[u8]) -> Option<Header> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut h = [0u8; 10];
    s.read_exact(&mut h).ok()?;
    Some(Header::decode(&h, u64::MAX >> 1).unwrap())
}

/// Files stored under `data_dir`'s `HH/LL` directories: uploads, not the state files beside
/// them (which the daemon rewrites through temp files of their own at any moment).
fn stored_files(data_dir: &std::path::Path) -> usize {
    let hex = |n: &str| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit());
    std::fs::read_dir(data_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(hex))
        .map(|e| files_in(&e.path()))
        .sum()
}

fn files_in(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += files_in(&p);
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn bad_input_gets_a_status_and_leaves_nothing_behind() {
    let mut cl = Cluster::start("", &["127.0.0.2"], "").await;
    let addr = cl.storages[0].addr();
    let data_dir = cl.storages[0].base().join("data");
    let before = stored_files(&data_dir);
    let head = |size: u64| UploadHead { store_path_index: 0, file_size: size, ext: "bin".into() }.encode_head();
    // Declared content that does not match the packet length.
    let h = Header::request(11u8, 15 + 10).encode();
    let ans = raw(&addr, &[&h[..], &head(20), &[0u8; 10]].concat()).unwrap();
    assert_eq!(ans.status, Status::EINVAL.0);
    // Unknown command, absurd and negative lengths, garbage heads.
    for bytes in [
        Header::request(250u8, 0).encode().to_vec(),
        [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 14, 0].to_vec(),
        [Header::request(14u8, 1 << 40).encode().to_vec(), vec![0; 32]].concat(),
        [Header::request(21u8, 60).encode().to_vec(), vec![0xff; 60]].concat(),
        [Header::request(24u8, 20).encode().to_vec(), vec![0x7f; 20]].concat(),
    ] {
        assert_eq!(raw(&addr, &bytes).map(|h| h.status), Some(Status::EINVAL.0), "{bytes:02x?}");
    }
    // A client that disconnects mid-upload: no file, no temp file.
    {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&Header::request(11u8, 15 + 1_000_000).encode()).unwrap();
        s.write_all(&head(1_000_000)).unwrap();
        s.write_all(&[1u8; 300_000]).unwrap();
    }
    let tmp = data_dir.join(".tmp");
    fdfs_e2e::eventually(Duration::from_secs(10), "the temp file removed", || {
        let n = files_in(&tmp);
        async move { (n == 0).then_some(()) }
    })
    .await;
    // Still serving, and nothing stored but the one upload after the bad input.
    let c = cl.client();
    let id = c.upload(UploadKind::Normal, None, "bin", Content::Bytes(b"after")).await.unwrap();
    assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], b"after");
    assert_eq!(stored_files(&data_dir), before + 1);
    assert!(cl.storages[0].daemon.is_running(), "the storage survived the bad input");
}

#[tokio::test]
async fn reserved_space_reached_is_enospc() {
    let cl = Cluster::start("reserved_storage_space = 99.9%\n", &["127.0.0.2"], "").await;
    let c = cl.client();
    assert_eq!(status_of(c.upload_buffer(b"x", "txt").await), Status::ENOSPC, "the tracker refuses");
    let r = c.storage.upload(&cl.storages[0].addr(), UploadKind::Normal, -1, "txt", Content::Bytes(b"x")).await;
    assert_eq!(status_of(r), Status::ENOSPC, "and so does the storage");
}

#[tokio::test]
async fn kill_9_during_a_large_upload_leaves_no_file_and_no_temp() {
    let mut cl = Cluster::start("", &["127.0.0.2"], "").await;
    let tracker = cl.tracker.addr();
    let addr = cl.storages[0].addr();
    let data_dir = cl.storages[0].base().join("data");
    let before = files_in(&data_dir) - files_in(&data_dir.join("sync"));
    let size: u64 = 200 << 20;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&Header::request(11u8, 15 + size as usize).encode()).unwrap();
    s.write_all(&UploadHead { store_path_index: 0, file_size: size, ext: "bin".into() }.encode_head()).unwrap();
    let chunk = vec![9u8; 1 << 20];
    for _ in 0..50 {
        s.write_all(&chunk).unwrap();
    }
    eventually(Duration::from_secs(10), "the upload in progress in a temp file", || async {
        (files_in(&data_dir.join(".tmp")) == 1).then_some(())
    })
    .await;
    cl.storages[0].restart(&tracker, true).await;
    drop(s);
    assert_eq!(files_in(&data_dir.join(".tmp")), 0, "unfinished upload removed at start");
    assert_eq!(files_in(&data_dir) - files_in(&data_dir.join("sync")), before, "no file appeared");
    let binlog = std::fs::read_to_string(data_dir.join("sync/binlog.000")).unwrap_or_default();
    assert!(binlog.is_empty(), "nothing was logged: {binlog}");
    let c = cl.client();
    let id = c.upload_buffer(b"alive", "txt").await.unwrap();
    assert_eq!(&c.download(&id, 0, 0).await.unwrap()[..], b"alive");
}

/// Uploads acknowledged before a kill -9 under load are all there, byte for byte and recorded,
/// after the restart, in both durability modes; nothing half-written took a name. Sizes span
/// the in-memory and the streamed write paths.
#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_upload_in_either_durability_mode() {
    for mode in ["power_loss", "process_crash"] {
        let mut cl = Cluster::start("", &["127.0.0.2"], &format!("durability = {mode}\n")).await;
        let tracker = cl.tracker.addr();
        let addr = cl.storages[0].addr();
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8u8 {
            let (c, addr, acked, stop) = (cl.client(), addr.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                for i in 0usize.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let data = payload(1 + (i * 7919 + w as usize * 104_729) % (200 << 10), w);
                    match c.storage.upload(&addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await {
                        Ok(r) => acked.lock().unwrap().push((r.filename, data)),
                        Err(_) => return,
                    }
                }
            }));
        }
        // Killed once the load is well under way (at least 100 uploads answered).
        let progress = acked.clone();
        fdfs_e2e::eventually(Duration::from_secs(60), "100 acknowledged uploads", || {
            let n = progress.lock().unwrap().len();
            async move { (n >= 100).then_some(()) }
        })
        .await;
        cl.storages[0].daemon.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(acked.len() >= 100, "{mode}: the load ran ({} uploads acknowledged)", acked.len());
        cl.storages[0].restart(&tracker, false).await;
        let c = cl.client();
        let binlog = std::fs::read_to_string(cl.storages[0].base().join("data/sync/binlog.000")).unwrap();
        for (name, data) in &acked {
            let got = c.storage.download(&addr, "group1", name, 0, 0).await.unwrap();
            assert!(got[..] == data[..], "{mode}: {name} intact");
            assert!(binlog.contains(name.as_str()), "{mode}: {name} recorded");
        }
        let data_dir = cl.storages[0].base().join("data");
        assert_eq!(files_in(&data_dir.join(".tmp")), 0, "{mode}: no temp file survives the restart");
    }
}

#[tokio::test]
async fn one_gib_round_trip_checked_by_crc32() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    let mut crc = crc32fast::Hasher::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut block = payload(1 << 20, 3);
        for i in 0..1024u32 {
            block[..4].copy_from_slice(&i.to_be_bytes());
            crc.update(&block);
            f.write_all(&block).unwrap();
        }
    }
    let crc = crc.finalize();
    let (rc, id, err) = cl.tool("fdfs_upload_file", &[src.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    let id = id.trim();
    let info = FileId::parse(id).unwrap().remote.info();
    assert_eq!((info.size, info.crc32), (Some(1 << 30), crc), "the name carries size and CRC32");
    std::fs::remove_file(&src).unwrap();
    let dst = dir.path().join("back.bin");
    let (rc, _, err) = cl.tool("fdfs_download_file", &[id, dst.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    let out = std::process::Command::new(fdfs_e2e::bin("fdfs_crc32")).arg(&dst).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{crc:x}"), "C prints it in hex");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 1 << 30);
}

#[tokio::test]
async fn storages_are_listed_with_their_own_port() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let s: &StorageProc = &cl.storages[0];
    let listed = cl.client().tracker.list_storages("group1", None).await.unwrap();
    assert_eq!(listed[0].storage_port, s.daemon.addr.port() as i64);
}

/// Sends an append (24) or modify (34) that declares `len` bytes, sends half, and hangs up.
fn cancelled_range_write(addr: &str, cmd: Command, body_head: &[u8], len: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = Header::request(cmd, body_head.len() + len).encode().to_vec();
    req.extend_from_slice(body_head);
    req.extend(std::iter::repeat_n(b'X', len / 2));
    s.write_all(&req).unwrap();
    s.flush().unwrap();
    drop(s);
}

#[tokio::test]
async fn a_cancelled_append_or_modify_leaves_the_file_as_it_was() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let c = cl.client();
    let (a, b) = (cl.storages[0].addr(), cl.storages[1].addr());
    let original: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let r = c.storage.upload(&a, UploadKind::Appender, -1, "log", Content::Bytes(&original)).await.unwrap();
    let len = 1 << 20;
    cancelled_range_write(
        &a,
        Command::AppendFile,
        &AppendHead { filename: r.filename.clone(), size: len as u64 }.encode_head(),
        len,
    );
    let modify = ModifyHead { filename: r.filename.clone(), offset: 10, size: len as u64 }.encode_head();
    cancelled_range_write(&a, Command::ModifyFile, &modify, len);
    // The storage notices the hang-ups, puts the file back, and takes the next change.
    let check = |want: Vec<u8>| {
        let (c, a, r) = (&c, a.clone(), &r);
        async move {
            fdfs_e2e::eventually(Duration::from_secs(10), "the file as it was", || {
                let (want, a) = (want.clone(), a.clone());
                async move { (c.storage.download(&a, &r.group, &r.filename, 0, 0).await.ok()? == want).then_some(()) }
            })
            .await
        }
    };
    check(original.clone()).await;
    c.storage.append(&a, &r.filename, Content::Bytes(b"tail")).await.unwrap();
    let mut want = original.clone();
    want.extend_from_slice(b"tail");
    check(want.clone()).await;
    // The peer holds exactly the same bytes.
    fdfs_e2e::eventually(Duration::from_secs(10), "the peer identical", || {
        let (c, b, r, want) = (&c, b.clone(), &r, &want);
        async move { (c.storage.download(&b, &r.group, &r.filename, 0, 0).await.ok()?[..] == want[..]).then_some(()) }
    })
    .await;
    let tmp = cl.storages[0].base().join("data/.tmp");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0, "no saved copies left behind");
}

/// Merges read, combine and rewrite the metadata file: concurrent ones must not lose each
/// other's keys, nor trip over each other's temp files.
#[tokio::test]
async fn concurrent_metadata_merges_lose_nothing() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let c = std::sync::Arc::new(cl.client());
    let id = c.upload(UploadKind::Normal, None, "jpg", Content::Bytes(b"meta")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (c, id) = (c.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i:02}");
            c.set_metadata(&id, &meta(&[(&key, "v")]), MetaOp::Merge).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let got = c.get_metadata(&id).await.unwrap();
    assert_eq!(got.len(), 32, "every merged key is kept: {got:?}");
    let data = cl.storages[0].base().join("data");
    let strays: Vec<_> = walk_files(&data)
        .into_iter()
        .filter(|p| p.rsplit('/').next().is_some_and(|name| name.contains("tmp")))
        .collect();
    assert!(strays.is_empty(), "temp files left: {strays:?}");
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// A stop signal lets requests in flight finish: an upload half sent when SIGTERM arrives is
/// completed and acknowledged, and the file is there after the restart.
#[tokio::test]
async fn a_stopping_storage_finishes_the_upload_in_flight() {
    let mut cl = Cluster::start("", &["127.0.0.2"], "").await;
    let addr = cl.storages[0].addr();
    let data = payload(2 << 20, 9);
    let head = UploadHead { store_path_index: 0, file_size: data.len() as u64, ext: "bin".into() }.encode_head();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = Header::request(Command::UploadFile, head.len() + data.len()).encode().to_vec();
    req.extend_from_slice(&head);
    req.extend_from_slice(&data[..data.len() / 2]);
    s.write_all(&req).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cl.storages[0].daemon.signal_term();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&data[data.len() / 2..]).unwrap();
    let mut raw = [0u8; 10];
    s.read_exact(&mut raw).unwrap();
    let h = Header::decode(&raw, 1 << 20).unwrap();
    assert_eq!(h.status, 0, "the upload in flight was completed");
    let mut body = vec![0u8; h.pkg_len as usize];
    s.read_exact(&mut body).unwrap();
    let id = fdfs_core::protocol::storage::FileIdResp::decode(&body).unwrap();
    let t = cl.tracker.addr();
    cl.storages[0].daemon.stop();
    cl.storages[0].restart(&t, false).await;
    let got = cl.client().storage.download(&cl.storages[0].addr(), &id.group, &id.filename, 0, 0).await.unwrap();
    assert_eq!(crc32fast::hash(&got), crc32fast::hash(&data));
}

/// A C key that fastdfs-rs accepts without acting on it is reported once at startup.
#[tokio::test]
async fn keys_without_effect_are_reported_at_startup() {
    let cl = Cluster::start("", &["127.0.0.2"], "keep_alive = 1\nkey_namespace = images").await;
    let log = std::fs::read_to_string(cl.storages[0].base().join("fdfs_storaged.stderr")).unwrap();
    for key in ["keep_alive", "key_namespace"] {
        let lines = log.lines().filter(|l| l.contains(&format!(": {key}: ")) && l.contains("no effect")).count();
        assert_eq!(lines, 1, "{key} reported once:\n{log}");
    }
}

/// `use_storage_id` with `id_type_in_filename = id`, and a storage.conf without `server_id`
/// (normal for configs older than 6.11): the storage learns its ID from the tracker and new
/// file names carry it.
#[tokio::test]
async fn a_storage_without_server_id_learns_it_and_names_files_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 127.0.0.2\n").unwrap();
    let conf = format!("use_storage_id = true\nstorage_ids_filename = {}\nid_type_in_filename = id\n", ids.display());
    let tracker = fdfs_e2e::TrackerProc::start(&conf);
    let t = tracker.addr();
    let s = StorageProc::start_as(&t, "127.0.0.2", "100001", "").await;
    let c = fdfs_e2e::client_for(&t);
    let r = c.storage.upload(&s.addr(), UploadKind::Normal, -1, "txt", Content::Bytes(b"by id")).await.unwrap();
    let id = FileId::parse(&r.file_id()).unwrap();
    assert_eq!(id.remote.info().source, fdfs_core::file_id::Source::ServerId(100001), "{}", r.file_id());
    assert_eq!(&c.download(&r.file_id(), 0, 0).await.unwrap()[..], b"by id");
}

/// A `server_id` in storage.conf under a tracker without storage IDs: the trackers and peers
/// name the storage by its address, and so must the storage itself (naming itself by the ID it
/// took itself for a peer and replicated to itself).
#[tokio::test]
async fn a_server_id_without_ids_at_the_tracker_is_ignored_as_c_does() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "server_id = 100009").await;
    let c = cl.client();
    let r =
        c.storage.upload(&cl.storages[0].addr(), UploadKind::Normal, -1, "txt", Content::Bytes(b"x")).await.unwrap();
    fdfs_e2e::eventually(Duration::from_secs(10), "the file on B", || {
        let (c, b, r) = (&c, cl.storages[1].addr(), &r);
        async move { c.storage.download(&b, &r.group, &r.filename, 0, 0).await.ok().map(|_| ()) }
    })
    .await;
    let sync = cl.storages[0].base().join("data/sync");
    let marks: Vec<String> = std::fs::read_dir(&sync)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".mark"))
        .collect();
    assert_eq!(marks.len(), 1, "one mark, for the peer only: {marks:?}");
    assert!(marks[0].starts_with("127.0.0.3_"), "{marks:?}");
}

/// `fdfs_monitor ... | head -1`: when the reader goes away the tool ends quietly with status
/// 141 (what a shell shows for a C tool killed by SIGPIPE), not with a panic and a backtrace.
#[tokio::test]
async fn a_tool_whose_output_is_closed_exits_quietly() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let mut child = std::process::Command::new(fdfs_e2e::bin("fdfs_monitor"))
        .arg(&cl.client_conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the tool writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// `use_access_log = true`: one line per client request in `logs/storage_access.log`, as C
/// writes it: `[time] client_ip action filename status time_ms request_length answer_length`.
#[tokio::test]
async fn the_access_log_has_a_line_per_client_request() {
    let cl = Cluster::start("", &["127.0.0.2"], "use_access_log = true").await;
    let s = &cl.storages[0];
    let c = cl.client();
    let addr = s.addr();
    let id = c.storage.upload(&addr, UploadKind::Normal, -1, "txt", Content::Bytes(b"hello")).await.unwrap();
    c.storage.download(&addr, "group1", &id.filename, 0, 0).await.unwrap();
    c.storage.delete(&addr, "group1", &id.filename).await.unwrap();
    assert!(c.storage.delete(&addr, "group1", &id.filename).await.is_err());
    // A name with a newline and a space stays on one line of the log.
    let mut body = b"group1".to_vec();
    body.resize(16, 0);
    body.extend_from_slice(b"M00/00/00/a\nb c.txt");
    let (status, _) = fdfs_e2e::raw_request(&addr, 12, &body);
    assert_ne!(status, 0);
    // Lines are written by the log's own thread, a moment later.
    let path = s.base().join("logs/storage_access.log");
    let log = fdfs_e2e::eventually(Duration::from_secs(10), "five access log lines", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        async move { (text.lines().count() >= 6).then_some(text) }
    })
    .await;
    // A new file starts with C 6.16.1's column names; stamps are to the millisecond.
    let (header, log) = log.split_once('\n').unwrap();
    assert!(header.ends_with("] client_ip action filename status time_used_ms req_len resp_len"), "{header}");
    let stamp = header.split(']').next().unwrap();
    assert_eq!((stamp.len(), &stamp[20..21]), ("[2026-01-01 00:00:00.000".len(), "."), "{header}");
    let mut lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 5, "{log}");
    let odd = lines.pop().unwrap();
    assert_eq!((odd.len(), odd[3], odd[4]), (9, "delete", "M00/00/00/a?b?c.txt"), "{log}");
    for (fields, (action, status)) in
        lines.iter().zip([("upload", "0"), ("download", "0"), ("delete", "0"), ("delete", "2")])
    {
        assert_eq!(fields.len(), 9, "{fields:?}");
        assert!(fields[0].starts_with('[') && fields[1].ends_with(']'), "local time first: {fields:?}");
        assert!(fields[2].parse::<std::net::IpAddr>().is_ok(), "the client's address: {fields:?}");
        assert_eq!((fields[3], fields[4], fields[5]), (action, id.filename.as_str(), status), "{fields:?}");
        assert!(fields[6].parse::<u64>().is_ok(), "milliseconds: {fields:?}");
    }
    // Upload: header + 15-byte head + 5 bytes in; header + group + name out.
    assert_eq!((lines[0][7], lines[0][8]), ("30", &*(10 + 16 + id.filename.len()).to_string()));
    assert_eq!(lines[1][8], "15", "download: header + 5 bytes");
}
