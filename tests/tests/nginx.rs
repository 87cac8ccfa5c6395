//! The real nginx with our module in front of a real fdfs_trackerd + fdfs_storaged: local
//! serving with nginx's own machinery, tokens, proxy and redirect to the owning storage, and a
//! corpus of hostile URLs that must leave the worker alive.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::file_id::FileId;
use fdfs_e2e::{common_free_port, get, http, Cluster, NginxProc};

fn mod_conf(store: &std::path::Path, tracker: &str, extra: &str) -> String {
    let mut s = format!(
        "group_name = group1\nurl_have_group_name = true\nstore_path_count = 1\nstore_path0 = {}\ntracker_server = {tracker}\nstorage_server_port = 23000\n",
        store.display()
    );
    s.push_str(extra);
    s
}

#[tokio::test]
async fn serves_local_files_like_nginx_static() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &cl.tracker.addr(), ""), "");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let id = cl.client().upload(UploadKind::Normal, None, "jpg", Content::Bytes(&data)).await.unwrap();
    let url = format!("/{id}");

    let r = get(&ngx.addr, &url);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("Content-Type"), Some("image/jpeg"));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    let info = FileId::parse(&id).unwrap().remote.info();
    let etag = format!("\"{:08x}-{:x}\"", info.crc32, 200_000);
    assert_eq!(r.header("ETag"), Some(etag.as_str()), "strong ETag from the name's CRC32 and size");
    let lm = r.header("Last-Modified").unwrap().to_owned();

    let h = http(&ngx.addr, "HEAD", url.as_bytes(), &[]);
    assert_eq!((h.status, h.body.len(), h.header("Content-Length")), (200, 0, Some("200000")));

    let r = http(&ngx.addr, "GET", url.as_bytes(), &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(r.header("Content-Range"), Some("bytes 100-199/200000"));
    let r = http(&ngx.addr, "GET", url.as_bytes(), &[("Range", "bytes=0-9,-10")]);
    assert_eq!(r.status, 206);
    assert!(r.header("Content-Type").unwrap().starts_with("multipart/byteranges; boundary="));
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("Content-Range: bytes 0-9/200000") && body.contains("Content-Range: bytes 199990-199999/200000")
    );
    let r = http(&ngx.addr, "GET", url.as_bytes(), &[("Range", "bytes=300000-")]);
    assert_eq!(r.status, 416);

    assert_eq!(http(&ngx.addr, "GET", url.as_bytes(), &[("If-Modified-Since", &lm)]).status, 304);
    assert_eq!(http(&ngx.addr, "GET", url.as_bytes(), &[("If-None-Match", &etag)]).status, 304);
    assert_eq!(http(&ngx.addr, "GET", url.as_bytes(), &[("If-None-Match", "\"other\"")]).status, 200);

    let r = get(&ngx.addr, &format!("{url}?filename=holiday.jpg"));
    assert_eq!(r.header("Content-Disposition"), Some("attachment; filename=\"holiday.jpg\""));
    // A name that is not ASCII also goes in RFC 6266's form, which browsers prefer.
    let r = get(&ngx.addr, &format!("{url}?filename=%E5%81%87%E6%9C%9F.jpg"));
    assert_eq!(
        r.header("Content-Disposition"),
        Some("attachment; filename=\"__.jpg\"; filename*=UTF-8''%E5%81%87%E6%9C%9F.jpg")
    );

    // Deleted: this storage wrote it, so it should be here: 404.
    cl.client().delete(&id).await.unwrap();
    assert_eq!(get(&ngx.addr, &url).status, 404);
    assert_eq!(http(&ngx.addr, "POST", url.as_bytes(), &[("Content-Length", "0")]).status, 405);
    assert_eq!(get(&ngx.addr, "/group1/M00/00/00/nonsense").status, 400);
}

#[tokio::test]
async fn anti_steal_token_accepted_and_refused() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let fail = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fail.path(), b"no hotlinking").unwrap();
    let extra = "http.anti_steal.check_token = true\nhttp.anti_steal.token_ttl = 600\nhttp.anti_steal.secret_key = FastDFS1234567890\n";
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &cl.tracker.addr(), extra), "");
    let id = cl.client().upload_buffer(b"secret picture", "jpg").await.unwrap();
    let remote = id.split_once('/').unwrap().1;
    let now = fdfs_core::timefmt::now_unix();
    let token = fdfs_core::http::anti_steal_token(remote, "FastDFS1234567890", now);
    let r = get(&ngx.addr, &format!("/{id}?token={token}&ts={now}"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"secret picture"[..]));
    assert_eq!(get(&ngx.addr, &format!("/{id}")).status, 400, "no token");
    assert_eq!(get(&ngx.addr, &format!("/{id}?token={token}&ts={}", now - 1)).status, 400, "wrong ts");
    let old = fdfs_core::http::anti_steal_token(remote, "FastDFS1234567890", now - 1000);
    assert_eq!(get(&ngx.addr, &format!("/{id}?token={old}&ts={}", now - 1000)).status, 400, "expired");
    drop(ngx);
    // With a token_check_fail file, refused requests get that file with 200.
    let extra = format!("{extra}http.anti_steal.token_check_fail = {}\n", fail.path().display());
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &cl.tracker.addr(), &extra), "");
    let r = get(&ngx.addr, &format!("/{id}?token=x&ts=1"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"no hotlinking"[..]));
}

#[tokio::test]
async fn files_not_here_yet_are_proxied_or_redirected_to_their_source() {
    // Without replication (issue 6) a second member of group1 waits in WAIT_SYNC for ever; the
    // module only looks at disk, so B's daemon runs in group2 while nginx B fronts group1 with
    // B's (empty) store path: exactly a member that has not received the file yet.
    let mut cl = Cluster::start("", &["127.0.0.2"], "").await;
    let tracker = cl.tracker.addr();
    cl.storages.push(fdfs_e2e::StorageProc::start(&tracker, "127.0.0.3", "group_name = group2\n").await);
    let port = common_free_port(&["127.0.0.2", "127.0.0.3"]);
    let (a, b) = (&cl.storages[0], &cl.storages[1]);
    let ngx_a = NginxProc::start("127.0.0.2", port, &mod_conf(&a.base(), &tracker, "response_mode = proxy\n"), "");
    let ngx_b = NginxProc::start("127.0.0.3", port, &mod_conf(&b.base(), &tracker, "response_mode = proxy\n"), "");
    // Uploaded to A only (no replication has happened: B lacks it).
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let r = cl.client().storage.upload(&a.addr(), UploadKind::Normal, 0, "jpg", Content::Bytes(&data)).await.unwrap();
    let url = format!("/{}", r.file_id());
    assert_eq!(get(&ngx_a.addr, &url).body, data);
    let via_b = get(&ngx_b.addr, &url);
    assert_eq!(via_b.status, 200, "proxied from A");
    assert_eq!(via_b.body, data);
    // Loop guard: a request that already went through a hop is refused by B.
    assert_eq!(get(&ngx_b.addr, &format!("{url}?redirect=1")).status, 400);
    drop(ngx_b);
    let ngx_b = NginxProc::start("127.0.0.3", port, &mod_conf(&b.base(), &tracker, "response_mode = redirect\n"), "");
    let r = get(&ngx_b.addr, &format!("{url}?x=1"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some(format!("http://127.0.0.2:{port}{url}?x=1&redirect=1").as_str()));
    // Following it works (A serves it; the redirect=1 argument does not matter there).
    let loc = r.header("Location").unwrap().trim_start_matches("http://").to_owned();
    let (host, path) = loc.split_at(loc.find('/').unwrap());
    assert_eq!(get(host, path).body, data);
    drop(ngx_b);

    // Behind TLS (nginx terminating it on a port of its own): the redirect stays on https and
    // names this server's TLS port, not http on it.
    let tls_port = common_free_port(&["127.0.0.3"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fastdfs-test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let tls_server = format!(
        "server {{ listen 127.0.0.3:{tls_port} ssl; ssl_certificate {}; ssl_certificate_key {};\n\
         location ~ /group[0-9]+/M[0-9A-F][0-9A-F]/ {{ ngx_fastdfs_module; }} }}",
        cert.display(),
        key.display()
    );
    let ngx_b =
        NginxProc::start("127.0.0.3", port, &mod_conf(&b.base(), &tracker, "response_mode = redirect\n"), &tls_server);
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-"])
        .arg(format!("https://127.0.0.3:{tls_port}{url}"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 302"), "{headers}");
    let want = format!("location: https://127.0.0.2:{tls_port}{url}?redirect=1").to_ascii_lowercase();
    assert!(headers.contains(&want), "{headers}");
    drop((ngx_a, ngx_b));
}

#[tokio::test]
async fn hostile_urls_get_4xx_and_the_worker_survives() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &cl.tracker.addr(), ""), "");
    let id = cl.client().upload_buffer(b"x", "txt").await.unwrap();
    let good = FileId::parse(&id).unwrap().remote.to_string();
    let workers = ngx.worker_pids();
    assert!(!workers.is_empty());
    let long = "A".repeat(8000);
    let corpus: Vec<Vec<u8>> = vec![
        b"/group1/M00/00/00/../../../../etc/passwd".to_vec(),
        b"/group1/M00/00/00/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_vec(),
        b"/group1/M00/../../../../../../../etc/shadow".to_vec(),
        b"/group1/M00/00/00/%00%00%00%00%00%00%00%00%00%00%00%00".to_vec(),
        format!("/group1/{}%00.jpg", &good[..good.len() - 4]).into_bytes(),
        format!("/group1/{long}").into_bytes(),
        format!("/group1/M00/00/00/{long}").into_bytes(),
        b"/group1/M00/00/00/!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!.jpg".to_vec(),
        b"/group1/M00/00/00/wKgB%ZZmVT8QCAEjRWAAAwOd6tvu8483.jpg".to_vec(),
        b"/group1/MFF/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg".to_vec(),
        b"/group1/M00/0g/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg".to_vec(),
        b"/group1/M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg/".to_vec(),
        b"/group1/M00/00/00/\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3.jpg".to_vec(),
        b"/group9/M00/00/00/wKgBC".to_vec(),
        b"/group1/M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg?redirect=1&token=%".to_vec(),
        format!("/group1/{good}?filename=%0d%0aSet-Cookie:%20x=1").into_bytes(),
        format!("/group1/{good}?{}", "a=1&".repeat(500)).into_bytes(),
    ];
    for target in &corpus {
        let r = http(&ngx.addr, "GET", target, &[("Range", "bytes=0-0,5-1,-0")]);
        assert!(r.status < 500, "{} for {}", r.status, String::from_utf8_lossy(target));
        assert!(r.header("Set-Cookie").is_none(), "header injection via filename");
        if !String::from_utf8_lossy(target).contains(&good) {
            assert!((400..500).contains(&r.status), "{} for {}", r.status, String::from_utf8_lossy(target));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ngx.worker_pids(), workers, "same worker PID: nothing crashed");
    assert_eq!(get(&ngx.addr, &id.replacen("group1", "/group1", 1)).status, 200);
}

#[tokio::test]
async fn flv_pseudo_streaming_and_multi_range_switch() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let extra = "flv_support = true\nflv_extension = flv\nhttp.multi_range.enabed = false\n";
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &cl.tracker.addr(), extra), "");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 200) as u8).collect();
    let id = cl.client().upload(UploadKind::Normal, None, "flv", Content::Bytes(&data)).await.unwrap();
    let url = format!("/{id}");
    let flv_header = fdfs_core::http::FLV_HEADER;
    let r = get(&ngx.addr, &format!("{url}?start=100"));
    assert_eq!(r.status, 200, "pseudo-streaming answers 200, not 206");
    assert_eq!(r.body, [&flv_header[..], &data[100..]].concat());
    let r = get(&ngx.addr, &format!("{url}?start=100&end=200"));
    assert_eq!(r.body, [&flv_header[..], &data[100..200]].concat());
    assert_eq!(r.header("Content-Length"), Some("113"));
    let r = get(&ngx.addr, &format!("{url}?start=0"));
    assert_eq!(r.body, data, "no FLV header when starting at 0");
    assert_eq!(get(&ngx.addr, &format!("{url}?start=5000")).status, 400);
    assert_eq!(get(&ngx.addr, &format!("{url}?start=abc")).body, data, "non-numeric start is ignored");
    // Multi-range disabled (historic spelling `enabed`): 416; a single range still works.
    let jpg = cl.client().upload_buffer(&data, "jpg").await.unwrap();
    let jurl = format!("/{jpg}");
    assert_eq!(http(&ngx.addr, "GET", jurl.as_bytes(), &[("Range", "bytes=0-1,3-4")]).status, 416);
    let r = http(&ngx.addr, "GET", jurl.as_bytes(), &[("Range", "bytes=3-4")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &data[3..5]));
}

#[tokio::test]
async fn parameters_loaded_from_the_tracker() {
    let cl = Cluster::start("storage_sync_file_max_delay = 10\n", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let tracker = cl.tracker.addr();
    use fdfs_core::file_id::{NameCore, Source};
    let now = fdfs_core::timefmt::now_unix();
    let core = NameCore {
        source: Source::Ip("127.0.0.9".parse().unwrap()),
        timestamp: (now - 100) as u32,
        size_field: 1 << 63 | 5,
        crc32: 1,
    };
    let url = format!("/group1/M00/00/00/{}123.jpg", core.to_b64());
    // Local config only: 86400 s → the file may still be replicating → fetched from its source,
    // which does not exist → 502 from nginx's proxy.
    let local = NginxProc::start("127.0.0.2", port, &mod_conf(&cl.storages[0].base(), &tracker, ""), "");
    assert_eq!(get(&local.addr, &url).status, 502);
    drop(local);
    // From the tracker: 10 s → old enough to be everywhere → 404 here.
    let loaded = NginxProc::start(
        "127.0.0.2",
        port,
        &mod_conf(&cl.storages[0].base(), &tracker, "load_fdfs_parameters_from_tracker = true\n"),
        "",
    );
    assert_eq!(get(&loaded.addr, &url).status, 404);
}

#[tokio::test]
async fn fastdfs_config_per_server_and_location() {
    // One nginx: the http level's file serves publicly; a server of its own and a location of
    // its own read a token-protected file. Each level uses its own, the inner one winning.
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let tracker = cl.tracker.addr();
    let store = cl.storages[0].base();
    let [public_port, server_port, location_port] = [0; 3].map(|_| common_free_port(&["127.0.0.2"]));
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.conf");
    let secret = "PerLocationSecret99";
    let extra = format!(
        "http.anti_steal.check_token = true\nhttp.anti_steal.token_ttl = 600\nhttp.anti_steal.secret_key = {secret}\n"
    );
    std::fs::write(&private, mod_conf(&store, &tracker, &extra)).unwrap();
    let servers = format!(
        "server {{ listen 127.0.0.2:{server_port}; fastdfs_config {p};\n\
           location ~ /group[0-9]+/M00/ {{ ngx_fastdfs_module; }} }}\n\
         server {{ listen 127.0.0.2:{location_port};\n\
           location ~ /group[0-9]+/M00/ {{ fastdfs_config {p}; ngx_fastdfs_module; }}\n\
           location /other/ {{ return 204; }} }}\n",
        p = private.display()
    );
    let ngx = NginxProc::start("127.0.0.2", public_port, &mod_conf(&store, &tracker, ""), &servers);
    let id = cl.client().upload_buffer(b"one file, two policies", "jpg").await.unwrap();
    let remote = id.split_once('/').unwrap().1;
    let now = fdfs_core::timefmt::now_unix();
    let token = fdfs_core::http::anti_steal_token(remote, secret, now);
    let public = get(&ngx.addr, &format!("/{id}"));
    assert_eq!((public.status, public.body.as_slice()), (200, &b"one file, two policies"[..]));
    for port in [server_port, location_port] {
        let addr = format!("127.0.0.2:{port}");
        assert_eq!(get(&addr, &format!("/{id}")).status, 400, "no token on :{port}");
        let r = get(&addr, &format!("/{id}?token={token}&ts={now}"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"one file, two policies"[..]), ":{port}");
    }
    drop(ngx);

    // A duplicate at one level, and a missing file, are refused with the file and line.
    let (nginx, module) = fdfs_e2e::nginx_paths();
    let conf = dir.path().join("nginx.conf");
    for (body, want) in [
        (format!("fastdfs_config {p}; fastdfs_config {p};", p = private.display()), "fastdfs_config is duplicate"),
        ("fastdfs_config /nonexistent/mod_fastdfs.conf;".to_owned(), "/nonexistent/mod_fastdfs.conf"),
    ] {
        std::fs::write(
            &conf,
            format!(
                "load_module {};\nevents {{}}\nhttp {{ server {{ listen 127.0.0.2:{public_port}; location /x/ {{ {body} }} }} }}\n",
                module.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want) && err.contains("nginx.conf:"), "{err}");
    }
}

#[tokio::test]
async fn a_file_lost_on_its_source_is_fetched_from_a_member_that_holds_it() {
    let cl = Cluster::start("", &["127.0.0.2", "127.0.0.3"], "").await;
    let tracker = cl.tracker.addr();
    let (a, b) = (&cl.storages[0], &cl.storages[1]);
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 7) as u8).collect();
    let r = cl.client().storage.upload(&a.addr(), UploadKind::Normal, 0, "jpg", Content::Bytes(&data)).await.unwrap();
    let id = r.file_id();
    let created = FileId::parse(&id).unwrap().remote.info().create_timestamp as i64;
    // B holds it, and the tracker knows B synced past it (what the module goes by).
    let client = cl.client();
    fdfs_e2e::eventually(Duration::from_secs(30), "B synced past the file", || async {
        let list = client.tracker.list_storages("group1", None).await.ok()?;
        let b_stat = list.iter().find(|s| s.ip == "127.0.0.3")?;
        (b_stat.stat.counters.last_synced_timestamp >= created).then_some(())
    })
    .await;
    let port = common_free_port(&["127.0.0.2", "127.0.0.3"]);
    let ngx_a = NginxProc::start("127.0.0.2", port, &mod_conf(&a.base(), &tracker, "response_mode = proxy\n"), "");
    let ngx_b = NginxProc::start("127.0.0.3", port, &mod_conf(&b.base(), &tracker, "response_mode = proxy\n"), "");
    let url = format!("/{id}");
    assert_eq!(get(&ngx_b.addr, &url).body, data, "B holds it");

    // Lost on A, its source (a disk replaced, a file removed by hand): fetched from B.
    let remote = FileId::parse(&id).unwrap().remote;
    let on_a = a.base().join(remote.relative_path());
    std::fs::remove_file(&on_a).unwrap();
    let r = get(&ngx_a.addr, &url);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    assert_eq!(r.body, data);
    assert!(ngx_a.error_log().contains("should be here and is not; from 127.0.0.3"), "{}", ngx_a.error_log());
    // A request that already made its hop is not sent on again: 404 (no loop).
    assert_eq!(get(&ngx_a.addr, &format!("{url}?redirect=1")).status, 404);
    drop(ngx_a);
    let ngx_a = NginxProc::start("127.0.0.2", port, &mod_conf(&a.base(), &tracker, "response_mode = redirect\n"), "");
    let r = get(&ngx_a.addr, &url);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some(format!("http://127.0.0.3:{port}{url}?redirect=1").as_str()));

    // Lost on both: A's hop to B ends there, in B's refusal of a second hop (400, as C's
    // module answers a `redirect=1` request for a file it does not have), not in a loop.
    std::fs::remove_file(b.base().join(remote.relative_path())).unwrap();
    drop(ngx_a);
    let ngx_a = NginxProc::start("127.0.0.2", port, &mod_conf(&a.base(), &tracker, "response_mode = proxy\n"), "");
    assert_eq!(get(&ngx_a.addr, &url).status, 400);
    assert!(ngx_b.error_log().contains("redirect loop"), "{}", ngx_b.error_log());
    drop((ngx_a, ngx_b));
}

/// The same with real C FastDFS 6.16.1 peers: under the C tracker (its member list and sync
/// times), our storage loses a file that the C member holds; our module on our storage fetches
/// it from the C member's store path through our module there. (The file is uploaded once the
/// C member is ACTIVE: in this run the C tracker never credited the sync times a member reports
/// for what it received while joining, so such files count as held only after
/// `storage_sync_file_max_delay`, as for C's own fetch routing.)
#[tokio::test]
async fn a_file_lost_on_our_storage_is_fetched_from_a_c_member() {
    let Some(bin) = fdfs_e2e::c_fastdfs_bin("a_file_lost_on_our_storage_is_fetched_from_a_c_member") else { return };
    let tracker = fdfs_e2e::CDaemon::tracker(&bin, "127.0.0.150", "");
    let ips = ["127.0.0.151", "127.0.0.152"];
    let port = common_free_port(&ips);
    let ours = fdfs_e2e::StorageProc::start(&tracker.addr, ips[0], &format!("port = {port}\n")).await;
    let theirs = fdfs_e2e::CDaemon::storage(&bin, &tracker.addr, "group1", ips[1], port, "");
    let client = fdfs_e2e::client_for(&tracker.addr);
    fdfs_e2e::eventually(Duration::from_secs(60), "the C member ACTIVE", || async {
        let list = client.tracker.list_storages("group1", Some(ips[1])).await.ok()?;
        (list.first()?.status == fdfs_core::tracker::status::ACTIVE).then_some(())
    })
    .await;
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 11) as u8).collect();
    let r = fdfs_e2e::eventually(Duration::from_secs(60), "an upload to ours", || async {
        client.storage.upload(&ours.addr(), UploadKind::Normal, 0, "jpg", Content::Bytes(&data)).await.ok()
    })
    .await;
    let id = r.file_id();
    let created = FileId::parse(&id).unwrap().remote.info().create_timestamp as i64;
    fdfs_e2e::eventually(Duration::from_secs(60), "the C member synced past the file", || async {
        let list = client.tracker.list_storages("group1", None).await.ok()?;
        let c = list.iter().find(|s| s.ip == ips[1])?;
        (c.status == fdfs_core::tracker::status::ACTIVE && c.stat.counters.last_synced_timestamp >= created)
            .then_some(())
    })
    .await;
    let http_port = common_free_port(&ips);
    let c_store = theirs.dir.path().join("base");
    let ngx_ours = NginxProc::start(ips[0], http_port, &mod_conf(&ours.base(), &tracker.addr, ""), "");
    let ngx_theirs = NginxProc::start(ips[1], http_port, &mod_conf(&c_store, &tracker.addr, ""), "");
    let url = format!("/{id}");
    assert_eq!(get(&ngx_theirs.addr, &url).body, data, "the C member holds it");
    std::fs::remove_file(ours.base().join(FileId::parse(&id).unwrap().remote.relative_path())).unwrap();
    let r = get(&ngx_ours.addr, &url);
    assert_eq!((r.status, r.body == data), (200, true), "{}", ngx_ours.error_log());
}
