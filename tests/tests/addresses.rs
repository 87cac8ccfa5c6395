//! Hosts with two addresses (storage_ids.conf's `inner,outer` form): the tracker answers each
//! client with the storage address of the client's class, as C does. The test gives loopback a
//! private address of its own (needs CAP_NET_ADMIN, as root in CI; skipped with a message
//! otherwise), so a client really connects from a private address.

use std::time::Duration;

use fdfs_e2e::{StorageProc, TrackerProc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An address added to `lo` for the test, removed when dropped.
struct LoAddr(&'static str);

impl LoAddr {
    fn add(ip: &'static str) -> Option<Self> {
        let ok = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(LoAddr(ip))
    }
}

impl Drop for LoAddr {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"]).status();
    }
}

/// 101 QUERY_STORE_WITHOUT_GROUP_ONE from `from`: the IP the tracker answers.
async fn store_ip_seen_from(tracker: &str, from: &str) -> String {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(tracker.parse().unwrap()).await.unwrap();
    s.write_all(&fdfs_core::protocol::Header::request(101u8, 0).encode()).await.unwrap();
    let mut answer = vec![0u8; 10 + 40];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answer[9], 0, "status");
    String::from_utf8_lossy(&answer[10 + 16..10 + 31]).trim_end_matches('\0').to_owned()
}

#[tokio::test]
async fn a_two_address_storage_is_given_to_each_client_by_its_class() {
    let (Some(_inner), Some(_client)) = (LoAddr::add("10.77.0.3"), LoAddr::add("10.77.0.2")) else {
        eprintln!("SKIPPED: cannot add addresses to lo here (needs CAP_NET_ADMIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 10.77.0.3,127.0.0.63\n").unwrap();
    let t = TrackerProc::start(&format!("use_storage_id = true\nstorage_ids_filename = {}\n", ids.display()));
    let addr = t.addr();
    let _s = StorageProc::start_as(&addr, "10.77.0.3", "100001", "").await;
    assert_eq!(store_ip_seen_from(&addr, "10.77.0.2").await, "10.77.0.3", "a private client gets the inner address");
    assert_eq!(store_ip_seen_from(&addr, "127.0.0.1").await, "127.0.0.63", "any other gets the outer one");
}
