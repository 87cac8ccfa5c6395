//! The in-process tier: a tracker and a storage run as tasks of this test's runtime on
//! 127.0.0.1:0 (no processes, no fixed ports), driven through the async client. Quick enough to
//! run on every `cargo test` of the core, and the place for tests that need to reach inside.

use std::sync::Arc;
use std::time::Duration;

use fdfs_core::client::{Client, Content, UploadKind};
use fdfs_core::config::{ClientConfig, Ini, ServerAddr, StorageConfig, TrackerConfig};
use fdfs_core::protocol::status;
use fdfs_core::server::{shutdown_pair, ConnectionThreads, ShutdownTrigger};
use fdfs_core::storage::StorageServer;
use fdfs_core::tracker::Tracker;
use tokio::net::TcpListener;

struct InProcess {
    client: Client,
    storage: Arc<StorageServer>,
    stop: ShutdownTrigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn ini(text: &str) -> Ini {
    Ini::parse(text, std::path::Path::new("in-process.conf")).unwrap()
}

async fn start() -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let (stop, shutdown) = shutdown_pair();
    let t_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t_addr = t_listener.local_addr().unwrap();
    let t_conf = TrackerConfig::from_ini(&ini(&format!(
        "bind_addr = 127.0.0.1\nport = {}\nbase_path = {}\nreserved_storage_space = 1MB\n",
        t_addr.port(),
        dir.path().join("tracker").display()
    )))
    .unwrap();
    let tracker = Arc::new(Tracker::new(t_conf).unwrap());
    let threads = || ConnectionThreads::start("test", 2, 4).unwrap();
    let mut tasks = vec![tokio::spawn(fdfs_core::tracker::run(t_listener, threads(), tracker, shutdown.clone()))];

    let s_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = dir.path().join("storage");
    let s_conf = StorageConfig::from_ini(&ini(&format!(
        "group_name = group1\nbind_addr = 127.0.0.1\nport = {}\nbase_path = {s}\nstore_path0 = {s}\n\
         subdir_count_per_path = 2\ntracker_server = {t_addr}\nheart_beat_interval = 1\nstat_report_interval = 1\n",
        s_listener.local_addr().unwrap().port(),
        s = store.display()
    )))
    .unwrap();
    let storage = Arc::new(StorageServer::open(s_conf).unwrap());
    tasks.push(tokio::spawn(fdfs_core::storage::run(s_listener, threads(), storage.clone(), shutdown)));
    let client = Client::new(&ClientConfig::for_tracker(ServerAddr::parse(&t_addr.to_string()).unwrap()));
    // Ready once the tracker lists the storage ACTIVE (the status the storage also learns).
    for _ in 0..200 {
        if storage.membership.status() == status::ACTIVE {
            return InProcess { client, storage, stop, tasks, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the in-process storage never became ACTIVE");
}

impl InProcess {
    async fn stop(self) {
        self.stop.trigger();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), t).await.expect("stops within the drain time").unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_delete_in_process() {
    let p = start().await;
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 199) as u8).collect();
    let id = p.client.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await.unwrap();
    assert_eq!(&p.client.download(&id, 0, 0).await.unwrap()[..], &data[..]);
    // The storage's own view: one upload counted, its record in the binlog.
    assert_eq!(p.storage.stats.success_upload_count.load(std::sync::atomic::Ordering::Relaxed), 1);
    let (index, size) = p.storage.binlog.position();
    assert_eq!(index, 0);
    assert!(size > 0);
    p.client.delete(&id).await.unwrap();
    assert!(p.client.download(&id, 0, 0).await.is_err());
    p.stop().await;
}

/// The durable default answers an upload only after the sync that covers it: a sync that
/// fails (as a dying disk's does) fails the upload, and leaves neither the file nor its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_sync_fails_is_refused_and_leaves_nothing() {
    let p = start().await;
    let before = p.storage.binlog.position();
    p.storage.disk.fail_next_syncs(1);
    let data = vec![7u8; 10_000];
    let r = p.client.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await;
    assert!(r.is_err(), "the upload must not be acknowledged: {r:?}");
    assert_eq!(p.storage.binlog.position(), before, "its record was cut back out");
    let store = p.storage.config.store_paths[0].join("data");
    let mut files = Vec::new();
    for hi in std::fs::read_dir(&store).unwrap().flatten().filter(|e| e.file_name().len() == 2) {
        for lo in std::fs::read_dir(hi.path()).unwrap().flatten() {
            files.extend(std::fs::read_dir(lo.path()).unwrap().flatten().map(|e| e.path()));
        }
    }
    assert!(files.is_empty(), "the file was taken back out: {files:?}");
    // The next round succeeds again.
    let id = p.client.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await.unwrap();
    assert_eq!(&p.client.download(&id, 0, 0).await.unwrap()[..], &data[..]);
    p.stop().await;
}
