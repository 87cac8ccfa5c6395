//! Uploads over HTTP (#29) through the real nginx, proxied with `proxy_request_buffering off` to
//! the storage's `http_listen`, on a replicating pair: curl multipart and raw uploads answer
//! JSON whose file ID downloads with the same bytes through the module and through the
//! protocol on both members; the metadata of the form and of the grant is set; grants that
//! are missing, forged or expired are 403, too large 413 before the body is read, a wrong
//! extension 415; a 200 MB form upload streams with the storage's memory flat. nginx keeps its
//! connections to the storage (upstream `keepalive`, HTTP/1.1): a chunked body is taken, and
//! one connection carries upload after upload.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fdfs_core::grant::UploadGrant;
use fdfs_e2e::{bin, common_free_port, eventually, get, NginxProc, StorageProc, TrackerProc};

const SECRET: &str = "app-server-secret-42";

/// curl's answer: (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Sends `requests` one after another on one connection to `addr` (each after the answer to
/// the one before); everything answered until the server closed it.
fn one_connection(addr: &str, requests: &[String]) -> String {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answers = Vec::new();
    for req in requests {
        sock.write_all(req.as_bytes()).unwrap();
        // An answer is whole when its head and Content-Length bytes are in.
        let start = answers.len();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&answers[start..]).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            let n = sock.read(&mut buf).unwrap_or(0);
            assert!(n > 0, "closed before answering {req}: {}", String::from_utf8_lossy(&answers));
            answers.extend_from_slice(&buf[..n]);
        }
    }
    let mut buf = [0u8; 64];
    assert_eq!(sock.read(&mut buf).unwrap_or(1), 0, "the connection closed after the refusal");
    String::from_utf8_lossy(&answers).into_owned()
}

fn token(conf: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("fdfs_http_token")).arg(conf).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn curl_uploads_go_into_the_group_and_grants_are_enforced() {
    let tracker = TrackerProc::start("");
    let ips = ["127.0.0.169", "127.0.0.170"];
    let (port, maker_port, http_port) = (common_free_port(&ips), common_free_port(&ips), common_free_port(&ips));
    let conf = |ip: &str| {
        format!(
            "port = {port}\nhttp_listen = {ip}:{maker_port}\nhttp_upload_secret = {SECRET}\nhttp_upload_max_size = 300MB\n"
        )
    };
    let a = StorageProc::start(&tracker.addr(), ips[0], &conf(ips[0])).await;
    let b = StorageProc::start(&tracker.addr(), ips[1], &conf(ips[1])).await;
    let mod_conf = format!(
        "group_name = group1\nurl_have_group_name = true\nstore_path0 = {}\ntracker_server = {}\n",
        a.base().display(),
        tracker.addr()
    );
    let upstream =
        format!("types {{ image/png png; }} upstream storage {{ server {}:{maker_port}; keepalive 4; }}", ips[0]);
    let upload_location = "location = /upload { proxy_pass http://storage; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; proxy_request_buffering off; client_max_body_size 400m; \
         proxy_read_timeout 60s; }";
    let ngx = NginxProc::start_with(ips[0], http_port, &mod_conf, &upstream, upload_location);
    let upload_url = format!("http://{}/upload", ngx.addr);
    let c = fdfs_e2e::client_for(&tracker.addr());
    let work = tempfile::tempdir().unwrap();
    let photo = work.path().join("photo.jpg");
    let bytes: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&photo, &bytes).unwrap();

    // A multipart form: the file, a field that becomes metadata, and the grant's own metadata.
    let grant = token(&a.daemon.conf, &["--group", "group1", "--ext", "jpg,png", "--meta", "owner=u42"]);
    assert!(grant.starts_with("?group=group1&expires="), "{grant}");
    let (code, body) =
        curl(&["-F", &format!("file=@{}", photo.display()), "-F", "title=summer", &format!("{upload_url}{grant}")]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    let id = v["file_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("group1/M00/") && id.ends_with(".jpg"), "{id}");
    assert_eq!(v["url"], format!("/{id}"));
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["crc32"], crc32fast::hash(&bytes) as u64);
    assert_eq!((v["metadata"]["title"].as_str(), v["metadata"]["owner"].as_str()), (Some("summer"), Some("u42")));
    // Read back through the module, and through the protocol on both members.
    let served = get(&ngx.addr, &format!("/{id}"));
    assert!(served.status == 200 && served.body == bytes, "module: {}", served.status);
    let name = id.trim_start_matches("group1/").to_owned();
    let meta = c.storage.get_metadata(&a.addr(), "group1", &name).await.unwrap();
    assert!(meta.contains(&(b"owner".to_vec(), b"u42".to_vec())), "{meta:?}");
    for s in [&a, &b] {
        let got = eventually(Duration::from_secs(20), "the upload on both members", || async {
            c.storage.download(&s.addr(), "group1", &name, 0, 0).await.ok()
        })
        .await;
        assert!(got == bytes, "bytes on {}", s.addr());
    }

    // A raw body, its extension from ?filename=.
    let png = work.path().join("raw.bin");
    std::fs::write(&png, b"\x89PNG raw body").unwrap();
    let raw_url = format!("{upload_url}{grant}&filename=logo.png");
    let (code, body) = curl(&[
        "--data-binary",
        &format!("@{}", png.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &raw_url,
    ]);
    assert_eq!(code, 200, "{body}");
    let raw_id = json(&body)["file_id"].as_str().unwrap().to_owned();
    assert!(raw_id.ends_with(".png"), "{raw_id}");
    assert_eq!(get(&ngx.addr, &format!("/{raw_id}")).body, b"\x89PNG raw body");

    // A chunked body (its length known at its end): nginx passes the chunks on (HTTP/1.1 to
    // the storage), which spools them and stores the file.
    let chunked = |grant: &str| {
        let url = format!("{upload_url}{grant}&filename=c.jpg");
        curl(&["--data-binary", &format!("@{}", photo.display()), "-H", "Transfer-Encoding: chunked", &url])
    };
    let (code, body) = chunked(&grant);
    assert_eq!(code, 200, "{body}");
    let chunked_id = json(&body)["file_id"].as_str().unwrap().to_owned();
    assert!(get(&ngx.addr, &format!("/{chunked_id}")).body == bytes, "chunked upload read back");
    // nginx kept its connections to the storage: after the uploads above, one at a time, its
    // upstream connections are still open (a connection per request would have left none).
    let maker = format!("{}:{maker_port}", ips[0]);
    let out = Command::new("ss").args(["-Htn", "state", "established"]).output().unwrap();
    let kept = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&maker)).count();
    // Each kept connection shows twice (nginx's end and the storage's).
    assert!(kept >= 2, "{kept} connection ends to {maker}");

    let small = token(&a.daemon.conf, &["--max-size", "1000"]);
    let (code, body) = chunked(&small);
    assert_eq!(code, 413, "chunked, over the grant: {body}");

    // Straight to http_listen: one connection, two uploads (a declared length, then chunks)
    // and a refusal after which the storage closes it.
    let answers = one_connection(
        &maker,
        &[
            format!("POST /upload{grant}&filename=k1.png HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nfirst"),
            format!(
                "POST /upload{grant}&filename=k2.png HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
            ),
            "POST /upload?filename=k3.png HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n\r\nx".to_owned(),
        ],
    );
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 403").count(), 1, "no grant: {answers}");
    assert_eq!(answers.matches("Connection: close").count(), 1, "only the refusal closes: {answers}");
    for (i, want) in [(0, &b"first"[..]), (1, b"second")] {
        let id = answers.split("\"file_id\":\"").nth(i + 1).and_then(|r| r.split('"').next()).unwrap();
        assert_eq!(get(&ngx.addr, &format!("/{id}")).body, want, "{id}");
    }

    // Grants: none, forged, expired, too small, wrong extension.
    let form = format!("file=@{}", photo.display());
    let small = token(&a.daemon.conf, &["--max-size", "1000"]);
    assert_eq!(curl(&["-F", &form, &upload_url]).0, 403, "no grant");
    let forged = grant.replace("ext=jpg%2Cpng", "ext=jpg%2Cexe");
    assert_eq!(curl(&["-F", &form, &format!("{upload_url}{forged}")]).0, 403, "forged");
    let expired = UploadGrant { expires: fdfs_core::timefmt::now_unix() - 10, ..Default::default() }.to_query(SECRET);
    assert_eq!(curl(&["-F", &form, &format!("{upload_url}?{expired}")]).0, 403, "expired");
    let (code, body) = curl(&["-F", &form, &format!("{upload_url}{small}")]);
    assert_eq!(code, 413, "{body}");
    let (code, _) =
        curl(&["--data-binary", &format!("@{}", photo.display()), &format!("{upload_url}{small}&filename=a.jpg")]);
    assert_eq!(code, 413, "raw, refused from its Content-Length");
    let (code, body) =
        curl(&["-F", &format!("file=@{};filename=run.exe", photo.display()), &format!("{upload_url}{grant}")]);
    assert_eq!(code, 415, "{body}");
    // A form whose preamble never ends (no boundary in 3 MiB): refused once 1 MiB of it is held,
    // not buffered whole.
    let junk = work.path().join("junk.bin");
    std::fs::write(&junk, vec![b'j'; 3 << 20]).unwrap();
    let (code, body) = curl(&[
        "--data-binary",
        &format!("@{}", junk.display()),
        "-H",
        "Content-Type: multipart/form-data; boundary=XyZ",
        &format!("{upload_url}{grant}"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a field's content"), "{body}");
    let other_group = token(&a.daemon.conf, &["--group", "group2"]);
    assert_eq!(curl(&["-F", &form, &format!("{upload_url}{other_group}")]).0, 403, "another group");

    // 200 MB in a form: streamed through nginx and spooled, the storage's memory stays flat.
    let big = work.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 % 253) as u8).collect();
        for i in 0..200u32 {
            f.write_all(&i.to_le_bytes()).unwrap();
            f.write_all(&block[4..]).unwrap();
        }
    }
    let rss_before = a.daemon.rss_kib();
    let any = token(&a.daemon.conf, &[]);
    let (code, body) = curl(&["-F", &format!("file=@{}", big.display()), &format!("{upload_url}{any}")]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["size"], 200u64 << 20);
    let peak = a.daemon.peak_rss_kib();
    eprintln!("storage RSS before the 200 MB upload {rss_before} KiB, peak {peak} KiB");
    assert!(peak < rss_before + 64 * 1024, "storage RSS {rss_before} KiB before, peak {peak} KiB");
    let out = work.path().join("back.bin");
    let url = format!("http://{}/{}", ngx.addr, v["file_id"].as_str().unwrap());
    let (code, _) = curl(&["-o", &out.display().to_string(), &url]);
    assert_eq!(code, 200);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&big).unwrap(), "200 MB read back");
}
