//! Resumable uploads (tus 1.0, #29) through the real nginx to the storage's `http_listen`,
//! driven by the real tus client from PyPI (tuspy): a file uploaded in chunks gets its final
//! file ID with the same bytes through the module and on the other member; an upload whose
//! storage is killed -9 in the middle of a PATCH resumes, after the restart, from the offset
//! the storage reports, and ends byte-identical; forged upload URLs and grants are refused.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use fdfs_e2e::{bin, common_free_port, eventually, get, http, NginxProc, StorageProc, TrackerProc};

const SECRET: &str = "tus-secret-7";

/// Drives tuspy: `whole ENDPOINT FILE CHUNK` uploads all and prints the upload URL; `part …
/// STOP` stops at STOP bytes; `resume ENDPOINT FILE CHUNK URL` prints the offset it resumes
/// from, then finishes.
const TUSPY: &str = r#"
import sys
from tusclient import client
cmd, endpoint, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = client.TusClient(endpoint)
if cmd == "resume":
    up = c.uploader(path, url=sys.argv[5], chunk_size=chunk)
    print(up.offset, flush=True)
    up.upload()
else:
    up = c.uploader(path, chunk_size=chunk, metadata={"filename": "video.bin", "title": "holiday"})
    up.upload(stop_at=int(sys.argv[5]) if cmd == "part" else None)
print(up.url, flush=True)
"#;

fn python() -> Option<String> {
    let py = std::env::var("FDFS_PY3FDFS_PYTHON").ok()?;
    let ok = Command::new(&py).args(["-c", "import tusclient"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

fn tuspy(py: &str, dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let script = dir.join("tuspy_driver.py");
    std::fs::write(&script, TUSPY).unwrap();
    let out = Command::new(py).arg(&script).args(args).output().unwrap();
    assert!(out.status.success(), "tuspy {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// `HEAD` of an upload URL: (status, Upload-Offset, Fastdfs-File-Id).
fn head(addr: &str, url: &str) -> (u16, Option<u64>, Option<String>) {
    let path = url.split_once(addr).map_or(url, |(_, p)| p);
    let r = http(addr, "HEAD", path.as_bytes(), &[("Tus-Resumable", "1.0.0")]);
    (r.status, r.header("Upload-Offset").and_then(|v| v.parse().ok()), r.header("Fastdfs-File-Id").map(str::to_owned))
}

/// A tracker, storages on `ips` taking uploads on `http_listen`, nginx on the first with
/// `location /files/` proxied there, and a tus endpoint with a grant for `exts`.
struct Front {
    tracker: TrackerProc,
    storages: Vec<StorageProc>,
    ngx: NginxProc,
    endpoint: String,
}

async fn front(ips: &[&str], exts: &str, types: &str) -> Front {
    let tracker = TrackerProc::start("");
    let (port, maker_port, http_port) = (common_free_port(ips), common_free_port(ips), common_free_port(ips));
    let mut storages = Vec::new();
    for ip in ips {
        let conf = format!("port = {port}\nhttp_listen = {ip}:{maker_port}\nhttp_upload_secret = {SECRET}\n");
        storages.push(StorageProc::start(&tracker.addr(), ip, &conf).await);
    }
    let mod_conf =
        format!("group_name = group1\nurl_have_group_name = true\nstore_path0 = {}\n", storages[0].base().display());
    // nginx keeps its connections to the storage, as the sample config does.
    let types = format!("{types} upstream storage {{ server {}:{maker_port}; keepalive 4; }}", ips[0]);
    let files =
        "location /files/ { proxy_pass http://storage; proxy_http_version 1.1; proxy_set_header Connection \"\"; \
                 proxy_request_buffering off; client_max_body_size 0; }";
    let ngx = NginxProc::start_with(ips[0], http_port, &mod_conf, &types, files);
    let out =
        Command::new(bin("fdfs_http_token")).arg(&storages[0].daemon.conf).args(["--ext", exts]).output().unwrap();
    let endpoint = format!("http://{}/files/{}", ngx.addr, String::from_utf8_lossy(&out.stdout).trim());
    Front { tracker, storages, ngx, endpoint }
}

#[tokio::test]
async fn tuspy_uploads_resume_after_a_kill_9_in_the_middle_of_a_patch() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: FDFS_PY3FDFS_PYTHON with tuspy (ci/test.sh installs it) is needed");
        return;
    };
    let Front { tracker, mut storages, ngx, endpoint } = front(&["127.0.0.171", "127.0.0.172"], "bin", "").await;
    let b = storages.pop().unwrap();
    let mut a = storages.pop().unwrap();
    let work = tempfile::tempdir().unwrap();
    let c = fdfs_e2e::client_for(&tracker.addr());

    // A whole upload in 1 MiB PATCHes: the final ID, its bytes, its metadata, on both members.
    let small = work.path().join("small.bin");
    let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&small, &data).unwrap();
    let url = tuspy(&py, work.path(), &["whole", &endpoint, &small.display().to_string(), "1048576"]).pop().unwrap();
    let (code, offset, id) = head(&ngx.addr, &url);
    assert_eq!((code, offset), (200, Some(data.len() as u64)));
    let id = id.expect("a finished upload names its file ID");
    assert!(id.starts_with("group1/M00/") && id.ends_with(".bin"), "{id}");
    assert!(get(&ngx.addr, &format!("/{id}")).body == data, "bytes through the module");
    let name = id.trim_start_matches("group1/").to_owned();
    let info = c.storage.file_info(&a.addr(), "group1", &name, 0).await.unwrap();
    assert_eq!(info.file_size, data.len() as i64);
    let meta = c.storage.get_metadata(&a.addr(), "group1", &name).await.unwrap();
    assert!(meta.contains(&(b"title".to_vec(), b"holiday".to_vec())), "{meta:?}");
    assert!(!meta.iter().any(|(k, _)| k.starts_with(b"tus_")), "the upload's own keys are gone: {meta:?}");
    let on_b = eventually(Duration::from_secs(20), "the upload on the member", || async {
        c.storage.download(&b.addr(), "group1", &name, 0, 0).await.ok()
    })
    .await;
    assert!(on_b == data, "bytes on the member");

    // 8 MiB of 24 in 2 MiB PATCHes, then a PATCH whose storage is killed -9 with 1 MiB of its
    // 4 received; after the restart the upload resumes from the offset the storage reports.
    let big = work.path().join("big.bin");
    let data: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let big_path = big.display().to_string();
    let url = tuspy(&py, work.path(), &["part", &endpoint, &big_path, "2097152", "8388608"]).pop().unwrap();
    assert_eq!(head(&ngx.addr, &url).1, Some(8 << 20));
    let path = url.split_once(&ngx.addr).unwrap().1.to_owned();
    let mut patch = std::net::TcpStream::connect(&ngx.addr).unwrap();
    write!(
        patch,
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        8 << 20,
        4 << 20
    )
    .unwrap();
    patch.write_all(&data[8 << 20..9 << 20]).unwrap();
    // The storage is receiving this PATCH's body when it dies (the bytes are past nginx).
    let held = eventually(Duration::from_secs(10), "the PATCH's bytes in the appender file", || async {
        let n = c.storage.file_info(&a.addr(), "group1", &url_name(&url), 0).await.ok()?.file_size;
        (n > 8 << 20).then_some(n)
    })
    .await;
    eprintln!("the appender file holds {held} bytes when its storage is killed");
    a.restart(&tracker.addr(), true).await;
    drop(patch);
    assert_eq!(head(&ngx.addr, &url), (200, Some(8 << 20), None), "the reported offset counts whole PATCHes");
    let size = c.storage.file_info(&a.addr(), "group1", &url_name(&url), 0).await.unwrap().file_size;
    eprintln!("after the restart: {size} bytes in the file, {} reported", 8 << 20);
    let out = tuspy(&py, work.path(), &["resume", &endpoint, &big_path, "2097152", &url]);
    assert_eq!(out[0], (8u64 << 20).to_string(), "tuspy resumed from the reported offset");
    let (code, offset, id) = head(&ngx.addr, &url);
    assert_eq!((code, offset), (200, Some(24 << 20)));
    let id = id.unwrap();
    assert!(get(&ngx.addr, &format!("/{id}")).body == data, "byte-identical after the kill and the resume");
    let name = id.trim_start_matches("group1/").to_owned();
    let on_b = eventually(Duration::from_secs(30), "the resumed upload on the member", || async {
        c.storage.download(&b.addr(), "group1", &name, 0, 0).await.ok().filter(|d| d.len() == data.len())
    })
    .await;
    assert!(on_b == data, "byte-identical on the member");

    // Forged upload URLs and grants, and a PATCH at the wrong offset.
    let forged = url.replace(".bin.", ".jpg.");
    assert_eq!(head(&ngx.addr, &forged).0, 404);
    let bad_grant = format!("http://{}/files/?expires=9999999999&sign=00", ngx.addr);
    let r = http(
        &ngx.addr,
        "POST",
        bad_grant.split_once(&ngx.addr).unwrap().1.as_bytes(),
        &[("Tus-Resumable", "1.0.0"), ("Upload-Length", "10")],
    );
    assert_eq!(r.status, 403);
    let fresh = tuspy(&py, work.path(), &["part", &endpoint, &big_path, "1048576", "1048576"]).pop().unwrap();
    let r = http(
        &ngx.addr,
        "PATCH",
        fresh.split_once(&ngx.addr).unwrap().1.as_bytes(),
        &[
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", "5"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Content-Length", "0"),
        ],
    );
    assert_eq!((r.status, r.header("Upload-Offset")), (409, Some("1048576")));
    // Termination.
    let r = http(&ngx.addr, "DELETE", fresh.split_once(&ngx.addr).unwrap().1.as_bytes(), &[("Tus-Resumable", "1.0.0")]);
    assert_eq!(r.status, 204);
    assert_eq!(head(&ngx.addr, &fresh).0, 404);
}

/// The appender file's name in an upload URL (`/files/<name with ~>.<signature>`).
fn url_name(url: &str) -> String {
    let token = url.rsplit_once("/files/").unwrap().1;
    token.rsplit_once('.').unwrap().0.replace('~', "/")
}

/// `tests/js/tus/node_modules` (ci/test.sh runs `npm ci` there), and node.
fn js_clients() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/tus");
    let ok = dir.join("node_modules/tus-js-client").is_dir()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    ok.then_some(dir)
}

#[tokio::test]
async fn tus_js_client_in_node_and_uppy_in_chromium_upload_through_nginx() {
    let Some(js) = js_clients() else {
        eprintln!("SKIPPED: node and tests/js/tus/node_modules (npm ci there; ci/test.sh does) are needed");
        return;
    };
    let Front { tracker: _tracker, storages: _storages, ngx, endpoint } =
        front(&["127.0.0.173"], "bin,png", "types { image/png png; text/html html; }").await;

    // tus-js-client in Node, 1 MiB PATCHes.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("clip.bin");
    let data: Vec<u8> = (0..2_600_000u32).map(|i| (i % 199) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let out = Command::new("node")
        .arg(js.join("node_upload.js"))
        .arg(&endpoint)
        .arg(&file)
        .env("NODE_PATH", js.join("node_modules"))
        .output()
        .unwrap();
    assert!(out.status.success(), "tus-js-client: {}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (code, offset, id) = head(&ngx.addr, &url);
    assert_eq!((code, offset), (200, Some(data.len() as u64)), "{url}");
    let id = id.unwrap();
    assert!(get(&ngx.addr, &format!("/{id}")).body == data, "tus-js-client's upload through the module");

    // Uppy (its prebuilt bundle) in headless Chromium: a page uploads a picture it drew, then
    // shows it from its new URL.
    let stat = ngx.prefix.path().join("static");
    std::fs::create_dir_all(&stat).unwrap();
    std::fs::copy(js.join("node_modules/uppy/dist/uppy.min.js"), stat.join("uppy.min.js")).unwrap();
    let page = std::fs::read_to_string(js.join("uppy.html")).unwrap().replace("ENDPOINT", &endpoint);
    std::fs::write(stat.join("uppy.html"), page).unwrap();
    let out = fdfs_e2e::chromium(&["--dump-dom".into(), format!("http://{}/static/uppy.html", ngx.addr)]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let title = dom.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or("").to_owned();
    assert!(title.starts_with("OK group1/M00/") && title.ends_with(".png 64x48"), "Uppy's page says {title:?}");
    let id = title.split(' ').nth(1).unwrap();
    let r = get(&ngx.addr, &format!("/{id}"));
    assert_eq!((r.status, r.header("Content-Type")), (200, Some("image/png")));
    assert!(r.body.starts_with(b"\x89PNG"), "the drawn picture is a PNG");
}
