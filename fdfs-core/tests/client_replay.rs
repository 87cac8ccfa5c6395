//! The async client against replayed FastDFS 6.16.1 answers: two loopback servers (tracker
//! role and storage role) answer with the captured bytes, in order, and check that each request
//! our client sends is byte-identical to the one the C tools sent in the same exchange (up to
//! the 64 content bytes the capture kept). Tracker answers that name a storage are patched to
//! point at the storage replayer's address; nothing else is changed.

mod common;

use std::sync::{Arc, Mutex};

use fdfs_core::client::{Client, ClientError, Content, UploadKind};
use fdfs_core::config::{ClientConfig, ServerAddr};
use fdfs_core::protocol::{Status, HEADER_LEN};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn exchange(name: &str) -> Vec<Value> {
    let text = common::capture("fastdfs-6.16.1.jsonl");
    let recs: Vec<Value> =
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["exchange"] == name).collect();
    assert!(!recs.is_empty(), "no exchange {name}");
    recs
}

/// One expected request and the captured answer to it.
struct Step {
    request: Vec<u8>,
    request_truncated: bool,
    answer: Vec<u8>,
}

/// A loopback server that plays one role of an exchange.
struct Replayer {
    addr: std::net::SocketAddr,
    /// What went wrong (mismatched request, missing answer); checked at the end.
    errors: Arc<Mutex<Vec<String>>>,
    served: Arc<Mutex<usize>>,
}

impl Replayer {
    fn start(listener: TcpListener, steps: Vec<Step>) -> Self {
        let addr = listener.local_addr().unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(0usize));
        let steps = Arc::new(Mutex::new(steps.into_iter().collect::<std::collections::VecDeque<_>>()));
        let (e, s) = (errors.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (e, s, steps) = (e.clone(), s.clone(), steps.clone());
                tokio::spawn(async move {
                    loop {
                        let mut h = [0u8; HEADER_LEN];
                        if sock.read_exact(&mut h).await.is_err() {
                            return;
                        }
                        let len = i64::from_be_bytes(h[..8].try_into().unwrap()) as usize;
                        let mut body = vec![0u8; len];
                        if sock.read_exact(&mut body).await.is_err() {
                            e.lock().unwrap().push("request body cut short".into());
                            return;
                        }
                        let got = [&h[..], &body[..]].concat();
                        let Some(step) = steps.lock().unwrap().pop_front() else {
                            e.lock().unwrap().push(format!("unexpected request cmd {}", h[8]));
                            return;
                        };
                        let n =
                            if step.request_truncated { step.request.len() } else { got.len().max(step.request.len()) };
                        if got.get(..n) != step.request.get(..n) {
                            e.lock().unwrap().push(format!(
                                "request differs:\n  got  {:02x?}\n  want {:02x?}",
                                &got[..got.len().min(120)],
                                &step.request[..step.request.len().min(120)]
                            ));
                        }
                        *s.lock().unwrap() += 1;
                        if sock.write_all(&step.answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, errors, served }
    }

    /// Every request so far matched, and `want_served` were answered.
    fn check(&self, want_served: usize) {
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        assert_eq!(*self.served.lock().unwrap(), want_served, "requests served");
    }
}

/// Splits an exchange into tracker and storage steps. Storage addresses in tracker answers are
/// patched to `storage_port`; a truncated download answer is rebuilt with `content`.
fn steps(recs: &[Value], storage_port: u16, content: Option<&dyn Fn(usize) -> u8>) -> (Vec<Step>, Vec<Step>) {
    let (mut tracker, mut storage) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < recs.len() {
        let req = &recs[i];
        if req["cmd"] == 100 || req["cmd"] == 82 {
            i += 1;
            continue;
        }
        let resp = &recs[i + 1];
        assert_eq!(resp["cmd"], 100);
        let request = [unhex(req["header_hex"].as_str().unwrap()), unhex(req["body_hex"].as_str().unwrap())].concat();
        let mut body = unhex(resp["body_hex"].as_str().unwrap());
        if resp["body_truncated"] == true {
            let f = content.expect("content generator for a truncated answer");
            body = (0..resp["body_len"].as_u64().unwrap() as usize).map(f).collect();
        }
        let to_tracker = req["to"] == "tracker";
        if to_tracker && matches!(req["cmd"].as_u64(), Some(101..=104)) && !body.is_empty() {
            // group[16] + ip[15] + port: point the client at the storage replayer.
            body[16..31].copy_from_slice(b"127.0.0.1\0\0\0\0\0\0");
            body[31..39].copy_from_slice(&(storage_port as i64).to_be_bytes());
        }
        let answer = [unhex(resp["header_hex"].as_str().unwrap()), body].concat();
        let step = Step { request, request_truncated: req["body_truncated"] == true, answer };
        if to_tracker {
            tracker.push(step)
        } else {
            storage.push(step)
        }
        i += 2;
    }
    (tracker, storage)
}

struct Replay {
    client: Client,
    tracker: Replayer,
    storage: Replayer,
}

async fn replay(name: &str, content: Option<&dyn Fn(usize) -> u8>) -> (Replay, usize, usize) {
    let recs = exchange(name);
    let storage_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tracker_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (t, s) = steps(&recs, storage_listener.local_addr().unwrap().port(), content);
    let (nt, ns) = (t.len(), s.len());
    let tracker = Replayer::start(tracker_listener, t);
    let storage = Replayer::start(storage_listener, s);
    let cfg = ClientConfig::for_tracker(ServerAddr::parse(&tracker.addr.to_string()).unwrap());
    (Replay { client: Client::new(&cfg), tracker, storage }, nt, ns)
}

fn f4k(i: usize) -> u8 {
    ((i * 7 + 3) % 256) as u8
}

#[tokio::test]
async fn upload_file_4k() {
    let (r, nt, ns) = replay("upload_file_4k", None).await;
    let data: Vec<u8> = (0..4096).map(f4k).collect();
    let id = r.client.upload(UploadKind::Normal, None, "txt", Content::Bytes(&data)).await.unwrap();
    assert_eq!(id, "group1/M00/01/D9/fwAAAmsF8IKAV3hxAAAQAF5OGZU021.txt");
    r.tracker.check(nt);
    r.storage.check(ns);
}

const ID_4K: &str = "group1/M00/01/D9/fwAAAmsF8IKAV3hxAAAQAF5OGZU021.txt";
const APPENDER: &str = "group1/M00/01/D9/fwAAAmsF8IWEShruAAAAACG37T4738.txt";

#[tokio::test]
async fn download_whole_range_and_tail() {
    let (r, nt, ns) = replay("download_file_whole", Some(&f4k)).await;
    let data = r.client.download(ID_4K, 0, 0).await.unwrap();
    assert_eq!(data.len(), 4096);
    assert!(data.iter().enumerate().all(|(i, &b)| b == f4k(i)));
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("download_file_range_100_50", None).await;
    let data = r.client.download(ID_4K, 100, 50).await.unwrap();
    assert_eq!(&data[..], &(100..150).map(f4k).collect::<Vec<_>>()[..]);
    r.tracker.check(nt);
    r.storage.check(ns);

    let tail = |i: usize| f4k(4000 + i);
    let (r, nt, ns) = replay("download_file_offset_4000_to_end", Some(&tail)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tail.bin");
    assert_eq!(r.client.download_to_file(ID_4K, &out, 4000, 0).await.unwrap(), 96);
    assert_eq!(std::fs::read(&out).unwrap(), (4000..4096).map(f4k).collect::<Vec<_>>());
    r.tracker.check(nt);
    r.storage.check(ns);
}

#[tokio::test]
async fn appender_upload_append_info_regenerate() {
    let (r, nt, ns) = replay("upload_appender_small", None).await;
    let id = r.client.upload(UploadKind::Appender, None, "txt", Content::Bytes(b"appender-part-1;")).await.unwrap();
    assert_eq!(id, APPENDER);
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("append_file", None).await;
    r.client.append(APPENDER, Content::Bytes(b"APPENDED-PART-2;")).await.unwrap();
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("file_info_appender", None).await;
    let info = r.client.query_file_info(APPENDER, 0).await.unwrap();
    assert_eq!((info.file_size, info.create_timestamp, info.crc32), (32, 1795551366, -856785410));
    assert_eq!(info.source_ip, "127.0.0.2");
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("regenerate_appender_filename", None).await;
    let new_id = r.client.regenerate_appender_filename(APPENDER).await.unwrap();
    assert_eq!(new_id, "group1/M00/01/D9/fwAAAmsF8IeARVijAAAAIMzuff4738.txt");
    r.tracker.check(nt);
    r.storage.check(ns);
}

#[tokio::test]
async fn delete_and_missing_files() {
    let (r, nt, ns) = replay("delete_file_4k", None).await;
    r.client.delete(ID_4K).await.unwrap();
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("delete_file_nonexistent", None).await;
    let e = r.client.delete(ID_4K).await.unwrap_err();
    assert!(matches!(e, ClientError::Status { status: Status::ENOENT }), "{e}");
    r.tracker.check(nt);
    r.storage.check(ns);

    let (r, nt, ns) = replay("download_nonexistent", None).await;
    let e = r.client.download(ID_4K, 0, 0).await.unwrap_err();
    assert_eq!(e.status(), Status::ENOENT);
    r.tracker.check(nt);
    r.storage.check(ns);
}

#[tokio::test]
async fn listing_and_metadata() {
    let (r, nt, _) = replay("monitor_list_all", None).await;
    let groups = r.client.tracker.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].group.as_str(), groups[0].storage_count), ("group1", 2));
    let storages = r.client.tracker.list_storages("group1", None).await.unwrap();
    assert_eq!(storages.len(), 2);
    assert_eq!(storages[1].ip, "127.0.0.3");
    assert_eq!(storages[0].version, "6.16.1");
    r.tracker.check(nt);

    let (r, _, _) = replay("fdfs_test_getmeta", None).await;
    let meta = r.client.get_metadata("group1/M00/01/D9/fwAAAmsF8IiAe4E6AAAAGziz54M911.txt").await.unwrap();
    let names: Vec<&[u8]> = meta.iter().map(|(n, _)| &n[..]).collect();
    assert_eq!(names, [&b"ext_name"[..], b"file_size", b"height", b"width"]);
    assert_eq!(meta[3].1, b"160");
    // fdfs_test ends with ACTIVE_TEST on both connections; our client does not, so one
    // request per role was served.
    r.tracker.check(1);
    r.storage.check(1);
}

#[tokio::test]
async fn unreachable_trackers_fail_over_then_report() {
    // Two dead trackers: every one is tried, then the last transport error is reported.
    let dead1 = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let dead2 = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut cfg = ClientConfig::for_tracker(ServerAddr::parse(&dead1.to_string()).unwrap());
    cfg.tracker_servers.push(ServerAddr::parse(&dead2.to_string()).unwrap());
    let e = Client::new(&cfg).tracker.query_store(None).await.unwrap_err();
    assert!(matches!(e, ClientError::NoTracker { .. }), "{e}");

    // A dead tracker first, a live one second: the call succeeds.
    let (r, nt, _) = replay("upload_file_4k", None).await;
    let mut cfg = ClientConfig::for_tracker(ServerAddr::parse(&dead1.to_string()).unwrap());
    cfg.tracker_servers.push(ServerAddr::parse(&r.tracker.addr.to_string()).unwrap());
    let t = Client::new(&cfg).tracker.query_store(None).await.unwrap();
    assert_eq!(t.group, "group1");
    r.tracker.check(nt);
}
