//! Trunk files written by C: our storage and nginx module take over the store path of a C 6.16.1
//! storage in trunk mode (`shared/fixtures/c-6.16.1-trunk-storage.tar.gz`) and serve every file
//! of its manifest with the right bytes, over the protocol and over HTTP; deleted files stay
//! gone; a trunk file deleted here frees its slot as C does; a new member's full copy carries
//! the trunk-resident files into the same trunk file and slot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_core::client::Client;
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::Status;
use fdfs_e2e::{client_for, eventually, http, shared_dir, Daemon, NginxProc, StorageProc, TrackerProc};

/// One manifest row.
#[derive(Debug, Clone)]
struct Row {
    file_id: String,
    size: u64,
    kind: String,
    metadata: String,
    crc32: u32,
}

impl Row {
    fn remote(&self) -> String {
        FileId::parse(&self.file_id).unwrap().remote.to_string()
    }
}

fn manifest(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap_or_else(|| panic!("column {name}"));
    let (id, size, kind, meta, crc) = (col("file_id"), col("size"), col("kind"), col("metadata"), col("crc32"));
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file_id: f[id].to_owned(),
                size: f[size].parse().unwrap(),
                kind: f[kind].to_owned(),
                metadata: f[meta].to_owned(),
                crc32: u32::from_str_radix(f[crc], 16).unwrap(),
            }
        })
        .collect()
}

/// The C storage's tree unpacked, its storage.conf pointed at `tracker` and a free port.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
    addr: String,
}

fn unpack(tracker: &str) -> Fixture {
    let dir = tempfile::Builder::new().prefix("fdfs-c-trunk-").tempdir().unwrap();
    let tarball = shared_dir().join("fixtures/c-6.16.1-trunk-storage.tar.gz");
    let st = std::process::Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(dir.path()).status().unwrap();
    assert!(st.success(), "unpacking {}", tarball.display());
    let root = dir.path().join("c-6.16.1-trunk-storage");
    let port = std::net::TcpListener::bind("127.0.0.33:0").unwrap().local_addr().unwrap().port();
    let conf = root.join("conf/storage.conf");
    let text: String = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("@FIXTURE_ROOT@", &root.display().to_string())
        .lines()
        .map(|l| match l.split_once('=').map(|(k, _)| k.trim()) {
            Some("tracker_server") => format!("tracker_server = {tracker}"),
            Some("port") => format!("port = {port}"),
            // Quicker status changes for the test (the fixture has 2 and 10 seconds).
            Some("heart_beat_interval") => "heart_beat_interval = 1".to_owned(),
            Some("stat_report_interval") => "stat_report_interval = 1".to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text).unwrap();
    Fixture { _dir: dir, root, conf, addr: format!("127.0.0.33:{port}") }
}

/// RFC 1123 date, as nginx writes `Last-Modified`.
fn http_date(t: i64) -> String {
    let (y, mo, d, h, mi, s) = fdfs_core::timefmt::civil(t);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][t.div_euclid(86_400).rem_euclid(7) as usize];
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][mo as usize - 1];
    format!("{weekday}, {d:02} {month} {y} {h:02}:{mi:02}:{s:02} GMT")
}

fn is_big_slave(r: &Row) -> bool {
    r.file_id.ends_with("_big") && r.file_id.len() - "group1/".len() == 60
}

async fn check_row(c: &Client, addr: &str, r: &Row) {
    let s = &c.storage;
    let name = r.remote();
    if r.kind == "deleted" {
        let e = s.download(addr, "group1", &name, 0, 0).await.unwrap_err();
        assert_eq!(e.status(), Status::ENOENT, "{}: deleted", r.file_id);
        return;
    }
    if is_big_slave(r) {
        // A 60-character slave name reads as a trunk name (C answers ENOENT): either is right.
        if let Ok(got) = s.download(addr, "group1", &name, 0, 0).await {
            assert_eq!(crc32fast::hash(&got), r.crc32, "{}", r.file_id);
        }
        return;
    }
    let info = s.file_info(addr, "group1", &name, 0).await.unwrap_or_else(|e| panic!("{}: {e}", r.file_id));
    assert_eq!(info.file_size as u64, r.size, "{}: size", r.file_id);
    if matches!(r.kind.as_str(), "trunk" | "normal") {
        let named = FileId::parse(&r.file_id).unwrap().remote.info();
        assert_eq!(info.create_timestamp, named.create_timestamp as i64, "{}: time from the name", r.file_id);
        assert_eq!(info.crc32 as u32, r.crc32, "{}: crc from the name", r.file_id);
    }
    if r.size == 0 {
        // C 6.15.4+: a download at offset 0 of an empty file is EINVAL.
        assert_eq!(s.download(addr, "group1", &name, 0, 0).await.unwrap_err().status(), Status::EINVAL);
    } else {
        let got = s.download(addr, "group1", &name, 0, 0).await.unwrap();
        assert_eq!((got.len() as u64, crc32fast::hash(&got)), (r.size, r.crc32), "{}: bytes", r.file_id);
        let (from, len) = (r.size / 3, (r.size / 2).clamp(1, 5000));
        let part = s.download(addr, "group1", &name, from, len).await.unwrap();
        assert_eq!(&part[..], &got[from as usize..(from + len).min(r.size) as usize], "{}: range", r.file_id);
    }
    let meta = s.get_metadata(addr, "group1", &name).await;
    if r.metadata.is_empty() {
        assert!(meta.map(|m| m.is_empty()).unwrap_or(true), "{}: no metadata", r.file_id);
    } else {
        let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.metadata).unwrap();
        let got = meta.unwrap();
        let got: Vec<(String, String)> = got
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let want: Vec<(String, String)> =
            want.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
        assert_eq!(got, want, "{}: metadata", r.file_id);
    }
}

#[tokio::test]
async fn a_c_trunk_store_path_is_served_over_the_protocol_and_http() {
    let tracker = TrackerProc::start("");
    let t = tracker.addr();
    let fx = unpack(&t);
    let rows = manifest(&fx.root);
    assert!(rows.iter().filter(|r| r.kind == "trunk").count() >= 200, "the fixture has its trunk rows");
    let trunk_files: Vec<Vec<u8>> = ["000001", "000002"]
        .iter()
        .map(|n| std::fs::read(fx.root.join("base_path/store/data/00/00").join(n)).unwrap())
        .collect();
    let mut storage = Daemon::start("fdfs_storaged", &fx.conf, &fx.root.join("base_path"));
    let c = client_for(&t);
    for r in &rows {
        check_row(&c, &fx.addr, r).await;
    }
    for (n, before) in ["000001", "000002"].iter().zip(&trunk_files) {
        let now = std::fs::read(fx.root.join("base_path/store/data/00/00").join(n)).unwrap();
        assert!(now == *before, "trunk file {n} untouched by reading");
    }

    // The same files through the nginx module, from the slot at its offset.
    let port = std::net::TcpListener::bind("127.0.0.33:0").unwrap().local_addr().unwrap().port();
    let store = fx.root.join("base_path/store");
    let ngx = NginxProc::start(
        "127.0.0.33",
        port,
        &format!("group_name=group1\nurl_have_group_name=true\nstore_path0={}\n", store.display()),
        "",
    );
    for r in rows.iter().filter(|r| r.kind == "trunk" && r.size > 0).step_by(7) {
        let path = format!("/{}", r.file_id);
        let resp = http(&ngx.addr, "GET", path.as_bytes(), &[]);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!((resp.body.len() as u64, crc32fast::hash(&resp.body)), (r.size, r.crc32), "{path}");
        let named = FileId::parse(&r.file_id).unwrap().remote.info();
        let last_modified = resp.header("Last-Modified").unwrap_or_default().to_owned();
        assert_eq!(last_modified, http_date(named.create_timestamp as i64), "{path}: Last-Modified is the name's time");
        let ranged = http(&ngx.addr, "GET", path.as_bytes(), &[("Range", "bytes=1-3")]);
        if r.size >= 4 {
            assert_eq!(ranged.status, 206, "{path}");
            assert_eq!(ranged.body, resp.body[1..4], "{path}: range inside the slot");
        }
        let head = http(&ngx.addr, "HEAD", path.as_bytes(), &[]);
        assert_eq!(head.header("Content-Length"), Some(r.size.to_string().as_str()), "{path}");
    }
    for r in rows.iter().filter(|r| r.kind == "deleted") {
        assert_eq!(http(&ngx.addr, "GET", format!("/{}", r.file_id).as_bytes(), &[]).status, 404, "{}", r.file_id);
    }

    // A trunk file deleted here: gone (ENOENT, 404), its slot header zeroed as C zeroes it, the
    // others in the same trunk file intact.
    let trunk: Vec<&Row> = rows.iter().filter(|r| r.kind == "trunk" && r.size > 100).collect();
    let (gone, kept) = (trunk[0], trunk[1]);
    c.storage.delete(&fx.addr, "group1", &gone.remote()).await.unwrap();
    assert_eq!(
        c.storage.download(&fx.addr, "group1", &gone.remote(), 0, 0).await.unwrap_err().status(),
        Status::ENOENT
    );
    assert_eq!(http(&ngx.addr, "GET", format!("/{}", gone.file_id).as_bytes(), &[]).status, 404);
    check_row(&c, &fx.addr, kept).await;
    let binlog = std::fs::read_to_string(fx.root.join("base_path/data/sync/binlog.000")).unwrap();
    assert!(binlog.ends_with(&format!(" D {}\n", gone.remote())), "recorded");

    // A new member's full copy puts the trunk-resident files into its own trunk files.
    let port = fx.addr.rsplit(':').next().unwrap();
    let member = StorageProc::start(&t, "127.0.0.34", &format!("port = {port}\nsubdir_count_per_path = 256\n")).await;
    let b = member.addr();
    for r in rows.iter().filter(|r| r.kind == "trunk" && r.file_id != gone.file_id).step_by(11) {
        let want = r.clone();
        eventually(Duration::from_secs(60), "the trunk file on the new member", || {
            let (c, b, want) = (&c, b.clone(), want.clone());
            async move {
                if want.size == 0 {
                    return c.storage.file_info(&b, "group1", &want.remote(), 0).await.ok().map(|_| ());
                }
                let got = c.storage.download(&b, "group1", &want.remote(), 0, 0).await.ok()?;
                (crc32fast::hash(&got) == want.crc32).then_some(())
            }
        })
        .await;
    }
    assert!(member.base().join("data/00/00/000001").exists(), "written into trunk file 000001 as at the source");
    let e = c.storage.download(&b, "group1", &gone.remote(), 0, 0).await.unwrap_err();
    assert_eq!(e.status(), Status::ENOENT, "the file deleted at the source is not on the new member");
    storage.stop();
}
