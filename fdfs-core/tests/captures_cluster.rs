//! Golden bytes of `tests/data/captures/fastdfs-6.16.1-cluster.jsonl`: the server-to-server and
//! client-facing layouts of the 6.16 generation that the first capture lacks. JOINs are
//! recognised as 6.16 and re-encode byte for byte; change notifications carry 67-byte briefs;
//! the cluster-stat commands (96-98) decode and re-encode; the answers of a tracker with
//! `response_ip_addr_size = IPv6` (block C) have the 46-byte layouts.

mod common;

use std::collections::BTreeMap;

use fdfs_core::protocol::report::*;
use fdfs_core::protocol::stat::{GroupStat, StorageStat};
use fdfs_core::protocol::storage::FileInfoResp;
use fdfs_core::protocol::tracker::*;
use fdfs_core::protocol::{Layout, Profile};
use serde_json::Value;

fn records() -> Vec<Value> {
    let text = common::capture("fastdfs-6.16.1-cluster.jsonl");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn kind(v: &Value) -> String {
    let from = v["from"].as_str().unwrap();
    match v["cmd"].as_u64().unwrap() {
        100 => format!("{from}:R{}", v["in_reply_to"]),
        c => format!("{from}:{c}"),
    }
}

/// Block C ran a tracker with `response_ip_addr_size = IPv6`.
fn ipv6_width(v: &Value) -> bool {
    v["exchange"].as_str().unwrap().starts_with('C')
}

/// The 6.16 tracker builds the cluster-stat records on the stack and leaves whatever was there
/// after a text field's NUL (as it does in the group field of sync requests). Compares `ours`
/// with the capture with every text field cut at its first NUL.
fn same_records(ours: &[u8], captured: &[u8], head: usize, record: usize, texts: &[(usize, usize)]) {
    let cut = |b: &[u8]| {
        let mut b = b.to_vec();
        for r in (head..b.len()).step_by(record) {
            for &(at, len) in texts {
                let field = &mut b[r + at..r + at + len];
                if let Some(nul) = field.iter().position(|&c| c == 0) {
                    field[nul..].fill(0);
                }
            }
        }
        b
    };
    assert_eq!(ours.len(), captured.len());
    assert_eq!(cut(ours), cut(captured), "records re-encode (text fields up to their NUL)");
}

/// Checks one record; returns false for kinds this test does not cover.
fn check(v: &Value) -> bool {
    if v["cmd"] == 100 && v["status"] != 0 {
        return false;
    }
    let b = unhex(v["body_hex"].as_str().unwrap());
    let d = &v["decoded"];
    let p = if ipv6_width(v) { Profile::V6_16_IPV6 } else { Profile::V6_16 };
    match kind(v).as_str() {
        "storage:81" => {
            assert_eq!(JoinReq::detect(&b), Some(Layout::V616));
            let j = JoinReq::decode(&b, Profile::V6_16).unwrap();
            assert_eq!((j.group.as_str(), j.version.as_str()), (d["group"].as_str().unwrap(), "6.16.1"));
            assert_eq!(j.storage_id, d["storage_id"].as_str().unwrap());
            assert_eq!(&j.encode(Profile::V6_16)[..], &b[..], "JOIN re-encodes");
        }
        "tracker:R81" => {
            let r = JoinResp::decode(&b, Profile::V6_16).unwrap();
            assert_eq!(r.status.byte() as i64, d["my_status"].as_i64().unwrap());
            assert_eq!(&r.encode(Profile::V6_16)[..], &b[..]);
        }
        "tracker:R83" | "tracker:R84" | "tracker:R89" => {
            let n = ChangeNotify::decode(&b, Profile::V6_16).unwrap();
            let briefs = n.leader.iter().chain(n.trunk.iter()).chain(n.group.iter().flatten()).count();
            assert_eq!(briefs, d["briefs"].as_array().unwrap().len());
            assert_eq!(b.len(), 1 + 67 * briefs, "67-byte briefs");
            assert_eq!(&n.encode(Profile::V6_16)[..], &b[..]);
        }
        "storage:60" => {
            assert_eq!(b.len(), 21, "6.16's GET_MY_IP");
            let r = GetMyIpReq::decode(&b).unwrap();
            assert_eq!(&r.encode(Profile::V6_16)[..], &b[..]);
        }
        "storage:76" => {
            let r = ReportStatusReq::decode(&b, Profile::V6_16).unwrap();
            assert_eq!(&r.encode(Profile::V6_16)[..], &b[..]);
        }
        "tracker:R71" => {
            assert_eq!(Brief::decode(&b, Profile::V6_16).unwrap().encode(Profile::V6_16)[..], b[..]);
        }
        "client:96" => assert_eq!(TrackerClusterStatReq::decode(&b, p).unwrap().encode(p)[..], b[..]),
        "client:97" => assert_eq!(StorageClusterStatReq::decode(&b, p).unwrap().encode(p)[..], b[..]),
        "client:98" => assert_eq!(VolumeStatReq::decode(&b, p).unwrap().encode(p)[..], b[..]),
        "tracker:R96" => {
            let s = TrackerClusterStats::decode(&b).unwrap();
            assert_eq!(s.trackers.len() as i64, d["count"].as_i64().unwrap());
            for (got, want) in s.trackers.iter().zip(d["trackers"].as_array().unwrap()) {
                assert_eq!(got.host, want["host"].as_str().unwrap());
            }
            same_records(&s.encode(), &b, 1, 90, &[(0, 52), (66, 8)]);
        }
        "tracker:R97" => {
            let s = StorageClusterStats::decode(&b).unwrap();
            assert_eq!(s.storages.len() as i64, d["count"].as_i64().unwrap());
            for (got, want) in s.storages.iter().zip(d["storages"].as_array().unwrap()) {
                assert_eq!(
                    (got.host.as_str(), got.version.as_str()),
                    (want["host"].as_str().unwrap(), want["version"].as_str().unwrap())
                );
            }
            same_records(&s.encode(), &b, 6, 106, &[(0, 16), (16, 52), (82, 8)]);
        }
        "tracker:R98" => {
            let s = VolumeStats::decode(&b).unwrap();
            let g = &d["groups"][0];
            assert_eq!(
                (s.groups[0].avail_mb, s.groups[0].reserved_mb),
                (g["avail_mb"].as_i64().unwrap(), g["reserved_mb"].as_i64().unwrap())
            );
            same_records(&s.encode(), &b, 5, 59, &[(0, 17)]);
        }
        "tracker:R101" | "tracker:R104" => {
            assert_eq!(b.len(), if ipv6_width(v) { 70 } else { 40 });
            let t = StoreTarget::decode(&b, p).unwrap();
            assert_eq!(t.ip, d["ip"].as_str().unwrap());
            assert_eq!(&t.encode(p)[..], &b[..]);
        }
        "tracker:R102" | "tracker:R103" => {
            assert_eq!(b.len(), if ipv6_width(v) { 69 } else { 39 });
            let t = FetchTarget::decode(&b, p).unwrap();
            assert_eq!(&t.encode(p)[..], &b[..]);
        }
        "tracker:R105" => {
            let t = FetchTargets::decode(&b, p).unwrap();
            assert_eq!(t.servers.len(), d["servers"].as_array().unwrap().len());
            assert_eq!(&t.encode(p)[..], &b[..], "a port per server");
        }
        "tracker:R106" | "tracker:R107" => {
            let t = StoreTargets::decode(&b, p).unwrap();
            assert_eq!(t.servers.len(), d["servers"].as_array().unwrap().len());
            assert_eq!(&t.encode(p)[..], &b[..]);
        }
        "tracker:R90" | "tracker:R91" => {
            let (g, gp) = GroupStat::decode_list_any(&b).unwrap();
            assert_eq!(GroupStat::encode_list(&g, gp)[..], b[..]);
            assert_eq!(b.len() % 113, 0, "no IP in the group stat: 113 bytes in both widths");
        }
        "tracker:R92" => {
            let (s, sp) = StorageStat::decode_list_any(&b).unwrap();
            assert_eq!(sp, p, "{} bytes", b.len());
            assert_eq!(s[0].ip, d["storages"][0]["ip"].as_str().unwrap());
            assert_eq!(StorageStat::encode_list(&s, sp)[..], b[..]);
        }
        "storage:R22" => {
            let f = FileInfoResp::decode_any(&b).unwrap();
            assert_eq!(f.source_ip, d["source_ip"].as_str().unwrap());
            assert_eq!(b.len(), if ipv6_width(v) { 70 } else { 40 });
        }
        "tracker:R75" => {
            let text = String::from_utf8(b).unwrap();
            let want = if ipv6_width(v) { "response_ip_addr_size=46\n" } else { "response_ip_addr_size=16\n" };
            assert!(text.contains(want), "{text}");
        }
        _ => return false,
    }
    true
}

#[test]
fn cluster_capture_layouts_decode_and_re_encode() {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (n, v) in records().iter().enumerate() {
        let covered = std::panic::catch_unwind(|| check(v))
            .unwrap_or_else(|_| panic!("line {n} ({}, exchange {}) failed", kind(v), v["exchange"]));
        if covered {
            *counts.entry(kind(v)).or_default() += 1;
        }
    }
    for k in [
        "storage:81",
        "tracker:R81",
        "tracker:R83",
        "storage:60",
        "storage:76",
        "tracker:R71",
        "tracker:R96",
        "tracker:R97",
        "tracker:R98",
        "tracker:R101",
        "tracker:R105",
        "tracker:R106",
        "tracker:R92",
        "storage:R22",
        "tracker:R75",
    ] {
        assert!(counts.contains_key(k), "{k} not seen: {counts:?}");
    }
    assert!(counts["storage:81"] >= 20, "every captured JOIN is checked");
}

/// 75 STORAGE_PARAMETER_REQ: the one codec reads C's answer and writes it back byte for byte,
/// and our tracker answers C's 26 keys in C's order (a C storage or client may read them in
/// any order, but nothing it reads is missing).
#[test]
fn parameter_answers_have_cs_keys_in_cs_order() {
    use fdfs_core::config::{Ini, TrackerConfig};
    use fdfs_core::protocol::parameters::Parameters;
    let recs = records();
    let answers: Vec<&Value> = recs.iter().filter(|r| r["in_reply_to"] == 75 && r["cmd"] == 100).collect();
    assert!(!answers.is_empty());
    for answer in answers {
        let body = unhex(answer["body_hex"].as_str().unwrap());
        assert_eq!(body.len() as u64, answer["body_len"].as_u64().unwrap(), "a whole body");
        let c = Parameters::decode(&body);
        assert_eq!(c.encode(), body);
        let ini = Ini::parse("base_path = /tmp\n", std::path::Path::new("tracker.conf")).unwrap();
        let ours = TrackerConfig::from_ini(&ini).unwrap().parameters(16);
        assert_eq!(ours.keys().collect::<Vec<_>>(), c.keys().collect::<Vec<_>>());
    }
}
