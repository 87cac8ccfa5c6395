//! The Django example (`examples/django`): a Storage on a PyPI FastDFS client saves an uploaded
//! image into our cluster, and the URL it returns is served by nginx with the module.

use fdfs_e2e::{common_free_port, Cluster, NginxProc};

#[tokio::test]
async fn django_storage_saves_and_nginx_serves() {
    let python = std::env::var("FDFS_PY3FDFS_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/fastdfs-interop/py3fdfs/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let port = common_free_port(&["127.0.0.2"]);
    let mod_conf =
        format!("group_name = group1\nurl_have_group_name = true\nstore_path0 = {}\n", cl.storages[0].base().display());
    let ngx = NginxProc::start("127.0.0.2", port, &mod_conf, "types { image/png png; }");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/django/example.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("FASTDFS_TRACKER", cl.tracker.addr())
        .env("FASTDFS_BASE_URL", format!("http://{}/", ngx.addr))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed (needs `pip install django py3Fdfs`, as ci/test.sh does):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    assert!(stdout.contains(&format!("\"url\": \"http://{}/group1/M00/", ngx.addr)), "{stdout}");
}
