//! C's client test programs (`fdfs_test`, `fdfs_test1`, `fdfs_appender_test`,
//! `fdfs_appender_test1`), the tutorial's first commands: their stdout in C's shape, and what
//! they did checked on the storage.

use fdfs_e2e::Cluster;

/// The value after `key` on the line that starts with it.
fn value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(key))
}

const BANNER: &str = "This is FastDFS client test program v6.16.1\n\nCopyright (C) 2008, Happy Fish / YuQing\n";

#[tokio::test]
async fn fdfs_test_uploads_a_master_with_metadata_and_a_slave_then_reads_and_deletes() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("photo.jpg");
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let (rc, out, err) = cl.tool("fdfs_test", &["upload", src.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.starts_with(BANNER), "{out}");
    assert!(err.contains("DEBUG - base_path="), "the settings line C logs: {err}");
    let s = &cl.storages[0];
    assert!(out.contains("tracker_query_storage_store_list_without_group: \n\tserver 1. group_name=group1, "), "{out}");
    assert!(out.contains(&format!("group_name=group1, ip_addr={}, port=", s.ip)), "{out}");
    assert!(out.contains("storage_upload_by_filename\ngroup_name=group1, remote_filename=M00/"), "{out}");
    assert!(out.contains("storage_upload_slave_by_filename\ngroup_name=group1, remote_filename=M00/"), "{out}");
    let names: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("group_name=group1, remote_filename=")).collect();
    assert_eq!(names.len(), 2, "{out}");
    let (master, slave) = (format!("group1/{}", names[0]), format!("group1/{}", names[1]));
    assert!(slave.contains("_big."), "the slave's prefix: {slave}");
    assert!(!out.contains("not equal"), "{out}");
    assert_eq!(value(&out, "file size="), Some("5000"));
    assert_eq!(value(&out, "file crc32="), Some(crc32fast::hash(&data).to_string().as_str()));
    assert_eq!(value(&out, "source ip address: "), Some(s.ip.as_str()));
    assert!(out.contains(&format!("example file url: http://{}/{master}\n", s.ip)), "{out}");

    let c = cl.client();
    for id in [&master, &slave] {
        assert!(c.download(id, 0, 0).await.unwrap() == data, "{id}");
        let meta = c.get_metadata(id).await.unwrap();
        assert_eq!(meta.len(), 4, "C's four metadata items on {id}");
    }

    let (g, r) = master.split_once('/').unwrap();
    let (rc, out, _) = cl.tool("fdfs_test", &["getmeta", g, r]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("get meta data success, meta count=4\next_name=jpg\nfile_size=115120\nheight=80\nwidth=160\n"),
        "{out}"
    );
    assert!(out.contains(&format!("storage={}:", s.ip)), "{out}");
    let (rc, out, _) = cl.tool("fdfs_test", &["setmeta", g, r, "M", "width=1024,color=red"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("set meta data success"), "{out}");
    let meta = c.get_metadata(&master).await.unwrap();
    assert!(meta.contains(&(b"width".to_vec(), b"1024".to_vec())) && meta.len() == 5, "{meta:?}");
    let (rc, out, _) = cl.tool("fdfs_test", &["query_servers", g, r]);
    assert_eq!(rc, 0);
    assert!(out.contains(&format!("server list (1):\n\t{}:", s.ip)), "{out}");
    let local = dir.path().join("got.jpg");
    let (rc, out, _) = cl.tool("fdfs_test", &["download", g, r, local.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains(&format!("download file success, file size=5000, file save to {}", local.display())), "{out}");
    assert_eq!(std::fs::read(&local).unwrap(), data);
    let (rc, out, _) = cl.tool("fdfs_test", &["delete", g, r]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("delete file success"), "{out}");
    // A second delete fails, said as C says it, with an honest exit code (C exits 0 here).
    let (rc, out, _) = cl.tool("fdfs_test", &["delete", g, r]);
    assert!(out.contains("delete file fail, error no: 2, error info: No such file or directory"), "{out}");
    assert_eq!(rc, 2);
    let (rc, out, _) = cl.tool("fdfs_test", &["rename"]);
    assert!(out.contains("invalid operation: rename") && rc == 22, "{out}");
}

#[tokio::test]
async fn fdfs_test1_names_files_by_file_id() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.txt");
    std::fs::write(&src, b"hello fastdfs").unwrap();
    let (rc, out, err) = cl.tool("fdfs_test1", &["upload", src.to_str().unwrap(), "BUFF"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("tracker_query_storage_store_list_with_group: \n"), "{out}");
    assert!(out.contains("storage_upload_by_filebuff\nsource ip address: "), "the label first, no name line: {out}");
    assert!(out.contains("storage_upload_slave_by_filebuff\n"), "{out}");
    let urls: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("example file url: http://")).collect();
    assert_eq!(urls.len(), 2, "{out}");
    let master = urls[0].split_once('/').unwrap().1.to_owned();
    assert!(urls[1].contains("1024x1024"), "BUFF's slave prefix: {out}");
    let (rc, out, _) = cl.tool("fdfs_test1", &["getmeta", &master]);
    assert_eq!(rc, 0);
    assert!(out.contains("get meta data success, meta count=4"), "{out}");
    let (rc, out, _) = cl.tool("fdfs_test1", &["delete", &master]);
    assert!(rc == 0 && out.contains("delete file success"), "{out}");
}

#[tokio::test]
async fn fdfs_appender_test_truncates_appends_and_modifies() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("log.txt");
    let data = b"hello fastdfs golden bytes\n";
    std::fs::write(&src, data).unwrap();
    let (rc, out, err) = cl.tool("fdfs_appender_test", &[src.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!err.contains("!!!"), "every size as expected: {err}");
    let sizes: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("file size=")).collect();
    // Uploaded 27, truncated to 13, appended to 40, modified at the end to 67 (C 6.16.1's steps).
    assert_eq!(sizes, ["27", "13", "40", "67"], "{out}");
    for line in [
        "storage_upload_appender_by_filename",
        "storage_append_by_filename",
        "append file successfully.",
        "storage_modify_by_filename",
        "modify file successfully.",
    ] {
        assert!(out.lines().any(|l| l == line), "{line}: {out}");
    }
    let name = value(&out, "group_name=group1, remote_filename=").unwrap();
    let got = cl.client().download(&format!("group1/{name}"), 0, 0).await.unwrap();
    let mut want = data[..13].to_vec();
    want.extend_from_slice(data);
    want.extend_from_slice(data);
    assert!(got == want, "the appender file's content");

    // A local file that is not there: C's failure line and its errno.
    let (rc, out, _) = cl.tool("fdfs_appender_test", &[dir.path().join("missing.txt").to_str().unwrap()]);
    assert!(out.contains("upload file fail, error no: 2, error info: No such file or directory"), "{out}");
    assert_eq!(rc, 2);

    let (rc, out, err) = cl.tool("fdfs_appender_test1", &[src.to_str().unwrap(), "CALLBACK"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("storage_upload_appender_by_callback1\nfild_id=group1/M00/"), "C's labels: {out}");
    let sizes: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("file size=")).collect();
    assert_eq!(sizes, ["27", "0", "27", "54"], "{out}");
}
