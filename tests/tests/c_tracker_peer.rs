//! A C 6.16.1 tracker's requests from `captures/fastdfs-6.16.1-cluster.jsonl` (A8c) replayed
//! against ours: its election, join and pings answered byte for byte as the C tracker answered
//! them. Codec checks; the real C tracker beside ours (following it, leading it, failover, a
//! split brain healed) is in `c_leaders.rs`, which replaced this file's fake C leader.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdfs_e2e::capture::{connect_from, packets, Packet};
use fdfs_e2e::{eventually, StorageProc, TrackerProc};

fn captured(prefix: &str, from: &str) -> Vec<Packet> {
    packets("fastdfs-6.16.1-cluster.jsonl", prefix, from)
}

/// Plays the C tracker's requests of one captured connection to `to` from address `from`, and
/// checks each answer against C's: the status and length always, the body where it does not
/// carry times (65's trunk servers).
fn replay(exchange: &str, from: &str, to: &str) {
    let requests = captured(exchange, "tracker-peer");
    let answers = captured(exchange, "tracker");
    assert!(!requests.is_empty() && requests.len() == answers.len(), "{exchange} in the capture");
    let mut s = connect_from(from, to);
    for (i, (req, want)) in requests.iter().zip(&answers).enumerate() {
        let (status, body) = fdfs_e2e::raw_exchange(&mut s, req.cmd, &req.body);
        assert_eq!(status, want.status, "request {i} (command {}): status", req.cmd);
        assert_eq!(body.len(), want.body.len(), "request {i} (command {}): answer length", req.cmd);
        if req.cmd == 65 {
            assert_eq!(body, want.body, "request {i}: 65's trunk servers, as C answered");
        }
    }
}

fn tracker_at(ip: &str) -> TrackerProc {
    // The captured texts name trackers as `ip:22122`.
    TrackerProc::start(&format!("bind_addr = {ip}\nport = 22122\n"))
}

/// A storage that lists both trackers, so each knows the other (C learns trackers this way).
async fn storage_listing(ip: &str, ours: &str, theirs: &str) -> StorageProc {
    let conf = format!("tracker_server = {ours}\ntracker_server = {theirs}\n");
    StorageProc::start(ours, ip, &conf).await
}

/// Ours leads; the C tracker T1 follows it as in A8c: 64, 58 JOIN_LEADER, then pings, the
/// first answered with every group's trunk server, the next ones empty (nothing changed).
#[tokio::test]
async fn a_c_follower_joins_and_pings_ours_as_it_did_a_c_leader() {
    let t = tracker_at("127.0.0.27");
    let _s = storage_listing("127.0.0.26", "127.0.0.27:22122", "127.0.0.28:22122").await;
    eventually(Duration::from_secs(10), "ours leads", || async {
        let leader = fdfs_e2e::client_for(&t.addr()).tracker.leader().await.ok()?;
        leader.contains("127.0.0.27").then_some(())
    })
    .await;
    replay("A8c_both_trackers_restarted_together_tracker_peer_to_tracker_127.0.0.21_64+58+65", "127.0.0.28", &t.addr());
}

/// The C tracker T2 (127.0.0.21) wins an election and tells ours (as T1, 127.0.0.20) with 66
/// and 67, as in A8c; ours answers as T1 did and takes it as the leader.
#[tokio::test]
async fn a_c_candidates_notify_and_commit_make_it_our_leader() {
    // T2 is there for ours to ask (64: not leader, and the greater address, so ours waits).
    let t2_status = captured("A8c_both_trackers_restarted_together_tracker_peer_to_tracker_127.0.0.20", "tracker");
    let _t2 = c_tracker("127.0.0.21:22122", vec![(64, t2_status[0].clone())]);
    let t = tracker_at("127.0.0.20");
    let _s = storage_listing("127.0.0.29", "127.0.0.20:22122", "127.0.0.21:22122").await;
    replay("A8c_both_trackers_restarted_together_tracker_peer_to_tracker_127.0.0.20_64+66+67", "127.0.0.21", &t.addr());
    let leader = fdfs_e2e::client_for(&t.addr()).tracker.leader().await.unwrap();
    assert!(leader.contains("127.0.0.21:22122"), "ours follows the C candidate it was told of: {leader}");
}

/// What the replaying C tracker was sent: (connection number, command, body).
type Seen = Arc<Mutex<Vec<(usize, u8, Vec<u8>)>>>;

/// A C 6.16.1 tracker at `addr` replaying captured answers, by command (anything else:
/// EOPNOTSUPP); what it was sent is recorded.
fn c_tracker(addr: &str, by_cmd: Vec<(u8, Packet)>) -> Seen {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr} for the C tracker: {e}"));
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let (log, by_cmd) = (log.clone(), by_cmd.clone());
            std::thread::spawn(move || loop {
                let mut head = [0u8; 10];
                if conn.read_exact(&mut head).is_err() {
                    return;
                }
                let len = u64::from_be_bytes(head[..8].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len.min(1 << 20)];
                if conn.read_exact(&mut body).is_err() {
                    return;
                }
                log.lock().unwrap().push((n, head[8], body));
                // What C answered to this command; anything else: not supported.
                let (status, answer) = match by_cmd.iter().find(|(c, _)| *c == head[8]) {
                    Some((_, p)) => (p.status, p.body.clone()),
                    None => (95, Vec::new()),
                };
                let mut out = (answer.len() as u64).to_be_bytes().to_vec();
                out.extend_from_slice(&[100, status]);
                out.extend_from_slice(&answer);
                if conn.write_all(&out).is_err() {
                    return;
                }
            });
        }
    });
    seen
}
