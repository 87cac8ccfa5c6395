//! C FastDFS 6.16.1 storage trees (`shared/fixtures/`): unpacking one for our daemons and
//! reading its manifest back through them.

use std::path::{Path, PathBuf};

use fdfs_core::client::Client;
use fdfs_core::file_id::FileId;
use fdfs_core::protocol::Status;

/// One manifest row.
#[derive(Debug, Clone)]
pub struct Row {
    pub file_id: String,
    pub size: u64,
    pub kind: String,
    pub metadata: String,
    pub crc32: u32,
}

impl Row {
    pub fn remote(&self) -> String {
        FileId::parse(&self.file_id).unwrap().remote.to_string()
    }
}

pub fn manifest(dir: &Path) -> Vec<Row> {
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

/// A C storage's tree unpacked, its storage.conf pointed at `tracker` and a free port.
#[derive(Debug)]
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The unpacked `c-6.16.1-<setup>/` folder (manifest.tsv, conf/, base_path/).
    pub root: PathBuf,
    pub conf: PathBuf,
    /// Where the storage listens: the fixture's address, a free port.
    pub addr: String,
}

/// Unpacks `tests/data/fixtures/<name>.tar.gz` (a storage that ran on `ip`).
pub fn unpack(name: &str, ip: &str, tracker: &str) -> Fixture {
    let dir = tempfile::Builder::new().prefix("fdfs-c-fixture-").tempdir().unwrap();
    let tarball = crate::test_data_dir().join(format!("fixtures/{name}.tar.gz"));
    let st = std::process::Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(dir.path()).status().unwrap();
    assert!(st.success(), "unpacking {}", tarball.display());
    let root = dir.path().join(name);
    let port = crate::free_port(ip);
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
    Fixture { _dir: dir, root, conf, addr: format!("{ip}:{port}") }
}

pub use fdfs_core::timefmt::http_date;

pub fn is_big_slave(r: &Row) -> bool {
    r.file_id.ends_with("_big") && r.file_id.len() - "group1/".len() == 60
}

/// Reads a manifest row back from the storage at `addr` as a client would: bytes (whole and a
/// range), file info (size, and for trunk and normal files time and CRC from the name) and
/// metadata; a deleted row must be ENOENT.
pub async fn check_row(c: &Client, addr: &str, r: &Row) {
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
