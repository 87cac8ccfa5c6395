//! A client that behaves like the Java client: Nagle left on, and every request written as two
//! writes (header, then body). Such a client's second write waits for the server's ACK of the
//! first; a server that delays its ACKs stalls every request by ~40 ms. The C servers re-arm
//! TCP_QUICKACK after every read; ours acknowledge at once whenever a read has to wait in the
//! middle of a request: both daemons are driven 200 times and the median request must stay far
//! below a delayed-ACK timer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fdfs_core::protocol::storage::{StreamedHead, UploadHead};
use fdfs_core::protocol::{Command, Header, HEADER_LEN};
use fdfs_e2e::Cluster;

/// Sends `body` after the header in a separate write and reads the whole answer.
fn two_write_request(sock: &mut TcpStream, cmd: Command, body: &[u8]) -> (u8, Vec<u8>) {
    sock.write_all(&Header::request(cmd, body.len()).encode()).unwrap();
    sock.write_all(body).unwrap();
    let mut raw = [0u8; HEADER_LEN];
    sock.read_exact(&mut raw).unwrap();
    let h = Header::decode(&raw, 1 << 20).unwrap();
    let mut answer = vec![0u8; h.pkg_len as usize];
    sock.read_exact(&mut answer).unwrap();
    (h.status, answer)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn connect_like_java(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    // What the Java client leaves as is: Nagle on.
    s.set_nodelay(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[tokio::test]
async fn split_writes_without_nodelay_are_not_delayed() {
    let cl = Cluster::start("", &["127.0.0.2"], "").await;
    let tracker = cl.tracker.addr();
    let storage = cl.storages[0].addr();
    tokio::task::spawn_blocking(move || {
        // Tracker: QUERY_STORE_WITH_GROUP_ONE, the group name as the second write.
        let mut t = connect_like_java(&tracker);
        let mut group = [0u8; 16];
        group[..6].copy_from_slice(b"group1");
        let mut times = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            let (status, answer) = two_write_request(&mut t, Command::QueryStoreWithGroupOne, &group);
            times.push(start.elapsed());
            assert_eq!((status, answer.len()), (0, 40), "query-store answer");
        }
        let tracker_median = median(times);

        // Storage: 4 KiB uploads, head and content as the second write.
        let mut s = connect_like_java(&storage);
        let content = vec![7u8; 4096];
        let mut times = Vec::new();
        for _ in 0..200 {
            let mut body =
                UploadHead { store_path_index: 0, file_size: content.len() as u64, ext: "bin".into() }.encode_head();
            body.extend_from_slice(&content);
            let start = Instant::now();
            let (status, answer) = two_write_request(&mut s, Command::UploadFile, &body);
            times.push(start.elapsed());
            assert_eq!(status, 0, "upload status");
            assert!(answer.len() > 16, "upload answer carries a file ID");
        }
        let storage_median = median(times);
        eprintln!("median: tracker {tracker_median:?}, storage {storage_median:?}");
        assert!(tracker_median < Duration::from_millis(10), "tracker waits for a delayed ACK: {tracker_median:?}");
        assert!(storage_median < Duration::from_millis(10), "storage waits for a delayed ACK: {storage_median:?}");
    })
    .await
    .unwrap();
}
