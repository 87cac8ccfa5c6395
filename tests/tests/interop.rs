//! Real third-party FastDFS clients (PyPI py3Fdfs, npm fdfs, via `shared/interop/run.sh`)
//! against our tracker and storage: upload (file, buffer, stream), download (whole, ranged),
//! delete, metadata, file info, appender upload, append and modify.

use fdfs_e2e::{shared_dir, Cluster};

#[tokio::test]
async fn pypi_and_npm_clients_pass_against_our_cluster() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let script = shared_dir().join("interop/run.sh");
    assert!(script.exists(), "{} missing (set FDFS_SHARED_DIR)", script.display());
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(cl.tracker.addr())
        .arg("--extended")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop failed:\n{stdout}\n{stderr}");
    // Each client prints `NAME rc=0 [failed: steps]`; only the py3Fdfs steps its driver marks
    // as known client bugs may appear as failed.
    let py = stdout.lines().find(|l| l.starts_with("py3fdfs")).expect("py3fdfs line");
    let node = stdout.lines().find(|l| l.starts_with("node-fdfs")).expect("node-fdfs line");
    assert!(py.contains("rc=0"), "{py}");
    assert!(node.contains("rc=0") && !node.contains("failed"), "{node}");
    // Every py3Fdfs step that failed is one its driver labels a known client bug.
    let cache = std::env::var("FDFS_INTEROP_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/fastdfs-interop", std::env::var("HOME").unwrap_or_default()));
    let log = std::fs::read_to_string(format!("{cache}/py3fdfs.log")).unwrap();
    let steps: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(steps.len() >= 10, "{log}");
    for s in steps {
        if s.contains("\"ok\": false") {
            assert!(s.contains("\"known_bug\""), "py3Fdfs step failed: {s}");
        }
    }
    for want in
        ["upload_by_buffer", "download_to_buffer+compare", "upload_by_filename", "append_by_buffer", "appended_content"]
    {
        assert!(log.contains(&format!("\"step\": \"{want}\", \"ok\": true")), "{want} did not pass:\n{log}");
    }
}
