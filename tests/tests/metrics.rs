//! `metrics_listen`: both daemons serve Prometheus text at /metrics (scraped and parsed here)
//! and a health check at /healthz; the figures follow what the cluster did.

use std::collections::HashMap;
use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_e2e::{eventually, free_port, http, Cluster};

/// `name{labels}` → value, from the text exposition (comments skipped).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn both_daemons_serve_metrics_and_health() {
    let tport = free_port("127.0.0.1");
    let mut cl =
        Cluster::start(&format!("metrics_listen = 127.0.0.1:{tport}\n"), &["127.0.0.64", "127.0.0.65"], "").await;
    let sport = free_port("127.0.0.64");
    let tracker = cl.tracker.addr();
    {
        let s = &mut cl.storages[0];
        let conf = std::fs::read_to_string(&s.daemon.conf).unwrap();
        std::fs::write(&s.daemon.conf, format!("{conf}metrics_listen = 127.0.0.64:{sport}\n")).unwrap();
        s.restart(&tracker, false).await;
    }
    let c = cl.client();
    let a = cl.storages[0].addr();
    let data = vec![7u8; 5000];
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(c.storage.upload(&a, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap().filename);
    }
    let _ = c.storage.download(&a, "group1", &names[0], 0, 0).await.unwrap();
    let _ = c.storage.download(&a, "group1", "M00/00/00/nonexistent", 0, 0).await;

    let smetrics = format!("127.0.0.64:{sport}");
    let m = eventually(Duration::from_secs(20), "the member caught up in the metrics", || async {
        let m = parse(&String::from_utf8_lossy(&http(&smetrics, "GET", b"/metrics", &[]).body));
        (m.get("fastdfs_replication_behind_bytes{peer=\"127.0.0.65\"}") == Some(&0.0)).then_some(m)
    })
    .await;
    assert_eq!(m["fastdfs_requests_total{command=\"UploadFile\",result=\"ok\"}"], 5.0, "{m:?}");
    assert_eq!(m["fastdfs_requests_total{command=\"DownloadFile\",result=\"ok\"}"], 1.0);
    assert!(m["fastdfs_requests_total{command=\"DownloadFile\",result=\"error\"}"] >= 1.0);
    assert_eq!(m["fastdfs_request_duration_seconds_count{command=\"UploadFile\"}"], 5.0);
    assert_eq!(m["fastdfs_content_bytes_total{direction=\"in\"}"], 25_000.0);
    assert_eq!(m["fastdfs_content_bytes_total{direction=\"out\"}"], 5000.0);
    assert!(m["fastdfs_store_path_free_bytes{path=\"0\"}"] > 0.0);
    // The test tracker's reserved_storage_space (1MB), as the upload check reads it.
    assert_eq!(m["fastdfs_store_path_reserved_bytes{path=\"0\"}"], (1 << 20) as f64);
    assert_eq!(m["fastdfs_storage_status{status=\"ACTIVE\"}"], 7.0);
    assert!(m["fastdfs_binlog_position_bytes{part=\"offset\"}"] > 0.0);
    assert_eq!(m["fastdfs_replication_behind_seconds{peer=\"127.0.0.65\"}"], 0.0);
    let h = http(&smetrics, "GET", b"/healthz", &[]);
    assert_eq!((h.status, String::from_utf8_lossy(&h.body).trim().to_owned()), (200, "ok ACTIVE".to_owned()));

    let tmetrics = format!("127.0.0.1:{tport}");
    let t = parse(&String::from_utf8_lossy(&http(&tmetrics, "GET", b"/metrics", &[]).body));
    assert_eq!(t["fastdfs_tracker_storages{group=\"group1\",status=\"ACTIVE\"}"], 2.0, "{t:?}");
    assert_eq!(t["fastdfs_tracker_groups"], 1.0);
    assert_eq!(t["fastdfs_tracker_is_leader"], 1.0);
    assert!(t["fastdfs_requests_total{command=\"StorageBeat\",result=\"ok\"}"] >= 1.0);
    assert_eq!(http(&tmetrics, "GET", b"/healthz", &[]).status, 200);
    assert_eq!(http(&tmetrics, "GET", b"/other", &[]).status, 404);
    assert_eq!(http(&tmetrics, "POST", b"/metrics", &[]).status, 405);
}
