//! Real third-party FastDFS clients (PyPI py3Fdfs, npm fdfs, via `shared/interop/run.sh`)
//! against our tracker and storage: upload (file, buffer, stream), download (whole, ranged),
//! delete, metadata, file info, appender upload, append and modify.

use fdfs_e2e::{shared_dir, Cluster};

/// `shared/interop/run.sh`, or `None` (with a SKIPPED line naming `test`) where `shared/` is
/// not beside the checkout.
fn interop_script(test: &str) -> Option<std::path::PathBuf> {
    let script = shared_dir().join("interop/run.sh");
    if !script.exists() {
        eprintln!("SKIPPED {test}: {} is absent (set FDFS_SHARED_DIR)", script.display());
        return None;
    }
    Some(script)
}

async fn run_interop(script: &std::path::Path, tracker: &str, mode: &str) -> std::process::Output {
    tokio::process::Command::new("bash").arg(script).arg(tracker).arg(mode).output().await.unwrap()
}

fn interop_cache() -> String {
    std::env::var("FDFS_INTEROP_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/fastdfs-interop", std::env::var("HOME").unwrap_or_default()))
}

#[tokio::test]
async fn pypi_and_npm_clients_pass_against_our_cluster() {
    let Some(script) = interop_script("pypi_and_npm_clients_pass_against_our_cluster") else { return };
    // The classic clients parse only the 16-byte IP layout: they pass against the default
    // (6.16 answers, `response_ip_addr_size = auto`) and against the classic generation.
    for conf in ["", "client_protocol_version = classic"] {
        classic_clients_pass(&script, conf).await;
    }
}

async fn classic_clients_pass(script: &std::path::Path, tracker_conf: &str) {
    let cl = Cluster::start(tracker_conf, &["127.0.0.2"], "").await;
    let out = run_interop(script, &cl.tracker.addr(), "--extended").await;
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
    let log = std::fs::read_to_string(format!("{}/py3fdfs.log", interop_cache())).unwrap();
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

/// PyPI `fastdfs-client` 1.3.0 hard-codes 46-byte IP fields: it works against a tracker
/// answering with `response_ip_addr_size = IPv6` (and its storages, which learn the width from
/// the tracker), and refuses the 16-byte layout at once.
#[tokio::test]
async fn pypi_fastdfs_client_with_ipv6_wide_answers() {
    let Some(script) = interop_script("pypi_fastdfs_client_with_ipv6_wide_answers") else { return };
    let cl = Cluster::start("response_ip_addr_size = IPv6", &["127.0.0.2"], "").await;
    let out = run_interop(&script, &cl.tracker.addr(), "--ipv6-layout").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(format!("{}/fastdfs-client.log", interop_cache())).unwrap_or_default();
    assert!(out.status.success(), "fastdfs-client failed:\n{stdout}\n{log}");
    for want in ["upload", "download"] {
        assert!(
            log.lines().any(|l| l.contains(&format!("\"step\": \"{want}")) && l.contains("\"ok\": true")),
            "{want}:\n{log}"
        );
    }

    // Against the default (16-byte) answers the same client recognises the layout it cannot
    // parse: exit 4, not a hang or a crash of ours.
    let cl = Cluster::start("", &["127.0.0.3"], "").await;
    let out = run_interop(&script, &cl.tracker.addr(), "--ipv6-layout").await;
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
}
