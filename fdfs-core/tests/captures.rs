//! Every packet of the real FastDFS 6.16.1 traffic in `tests/data/captures/` (copied from `shared/captures/`) decodes with our codec
//! (V6.16 profile), the decoded fields agree with the capture's own decoding, and re-encoding
//! gives the captured bytes (the fixed part, for bodies whose content was cut to 64 bytes).

mod common;

use std::collections::BTreeMap;

use fdfs_core::protocol::peer::*;
use fdfs_core::protocol::report::*;
use fdfs_core::protocol::stat::{GroupStat, StorageStat};
use fdfs_core::protocol::storage::*;
use fdfs_core::protocol::tracker::*;
use fdfs_core::protocol::{Header, Profile, HEADER_LEN};
use serde_json::Value;

const P: Profile = Profile::V6_16;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

struct Rec {
    v: Value,
    header: Header,
    body: Vec<u8>,
}

impl Rec {
    fn s(&self, k: &str) -> &str {
        self.v["decoded"][k].as_str().unwrap_or_else(|| panic!("decoded.{k}"))
    }
    fn i(&self, k: &str) -> i64 {
        self.v["decoded"][k].as_i64().unwrap_or_else(|| panic!("decoded.{k}"))
    }
    fn body_len(&self) -> u64 {
        self.v["body_len"].as_u64().unwrap()
    }
    fn truncated(&self) -> bool {
        self.v["body_truncated"].as_bool().unwrap()
    }
    fn kind(&self) -> String {
        let from = self.v["from"].as_str().unwrap();
        match self.header.cmd {
            100 => format!("{from}:R{}", self.v["in_reply_to"]),
            c => format!("{from}:{c}"),
        }
    }
}

/// Decodes a streamed head from the captured prefix, checks it against the capture and that
/// re-encoding gives the captured head bytes.
fn head<T: StreamedHead>(r: &Rec) -> T {
    let len = T::head_len(&r.body[..T::FIXED_LEN]).unwrap();
    let h = T::decode_head(&r.body[..len], r.body_len()).unwrap();
    assert_eq!(&h.encode_head()[..], &r.body[..len], "head re-encodes");
    if let Some(off) = r.v["content_offset"].as_u64() {
        assert_eq!(off as usize, len);
    }
    h
}

fn same(encoded: &[u8], r: &Rec) {
    assert_eq!(encoded, &r.body[..], "{} re-encodes to the captured bytes", r.kind());
}

fn check(r: &Rec) {
    let h = &r.header;
    if h.cmd == 100 && h.status != 0 {
        // Every error answer in the captures is header-only.
        assert_eq!(h.pkg_len, 0);
        return;
    }
    let b = &r.body[..];
    match r.kind().as_str() {
        // Empty bodies.
        "storage:83" => {
            let stat = decode_beat(b).unwrap();
            assert_eq!(stat.is_some(), b.len() == 348);
            same(&encode_beat(stat.as_ref()), r);
        }
        "storage:77" | "storage-peer:111" | "storage:R111" | "client:101" | "client:106" | "client:111"
        | "tracker:R111" | "client:91" | "client:82" | "client:250" | "storage:R16" | "storage:R17" | "storage:R18"
        | "storage:R25" | "storage:R35" | "storage:R24" | "storage:R13" | "storage:R36" | "storage:R34"
        | "storage:R12" | "storage:R9" => {
            // The probe `tracker_query_store_101_bad_len` sent a body to 101; our decoder must
            // refuse it as the C tracker did (it answered EINVAL).
            let probe = r.v["exchange"] == "tracker_query_store_101_bad_len";
            assert_eq!(fdfs_core::protocol::codec::expect_len(b, 0).is_err(), probe, "{}", r.kind());
        }
        "tracker:R83" | "tracker:R89" | "tracker:R84" => {
            let n = ChangeNotify::decode(b, P).unwrap();
            assert_eq!(n, ChangeNotify::default());
            same(&n.encode(P), r);
        }
        "tracker:R77" => assert_eq!(r.s("text"), std::str::from_utf8(b).unwrap()),
        "storage:89" => {
            let e = decode_sync_report(b).unwrap();
            let want = r.v["decoded"]["entries"].as_array().unwrap();
            assert_eq!(e.len(), want.len());
            for (got, w) in e.iter().zip(want) {
                assert_eq!(got.peer_id, w[0].as_str().unwrap());
                assert_eq!(got.timestamp as i64, w[1].as_i64().unwrap());
            }
            same(&encode_sync_report(&e), r);
        }
        "storage:84" => {
            let u = decode_disk_usage(b, 1).unwrap();
            let w = &r.v["decoded"]["paths"][0];
            assert_eq!((u[0].total_mb, u[0].free_mb), (w[0].as_i64().unwrap(), w[1].as_i64().unwrap()));
            same(&encode_disk_usage(&u), r);
        }
        "storage-peer:16" | "storage-peer:18" => {
            let v = SyncFileHead::decode_with_status(
                &b[..SyncFileHead::head_len(&b[..36]).unwrap()],
                r.body_len(),
                h.status,
            )
            .unwrap();
            assert_eq!((v.filename.as_str(), v.group.as_str()), (r.s("filename"), r.s("group")));
            assert_eq!((v.file_size as i64, v.timestamp as i64), (r.i("file_size"), r.i("timestamp")));
            // The C sender leaves garbage after the group's NUL (captures README, discrepancy 2),
            // so compare everything but the group field.
            let enc = v.encode_head();
            assert_eq!(&enc[..20], &b[..20]);
            assert_eq!(&enc[36..], &b[36..enc.len()]);
        }
        "storage-peer:25" | "storage-peer:35" => {
            let len = SyncRangeHead::head_len(&b[..44]).unwrap();
            let v = SyncRangeHead::decode_head(&b[..len], r.body_len()).unwrap();
            assert_eq!((v.offset as i64, v.size as i64), (r.i("start_offset"), r.i("length")));
            assert_eq!(v.filename, r.s("filename"));
            let enc = v.encode_head();
            assert_eq!(&enc[..28], &b[..28]);
            assert_eq!(&enc[44..], &b[44..len]);
        }
        "storage-peer:37" => {
            let v = SyncTruncateReq::decode(b).unwrap();
            assert_eq!((v.old_size as i64, v.new_size as i64), (r.i("old_size"), r.i("new_size")));
            let enc = v.encode();
            assert_eq!(&enc[..28], &b[..28]);
            assert_eq!(&enc[44..], &b[44..]);
        }
        "storage-peer:17" => {
            let v = SyncDeleteReq::decode(b).unwrap();
            assert_eq!((v.filename.as_str(), v.timestamp as i64), (r.s("filename"), r.i("timestamp")));
            same(&v.encode(), r);
        }
        "storage-peer:40" => {
            let v = SyncLinkReq::decode(b).unwrap();
            assert_eq!((v.dest.as_str(), v.src.as_str()), (r.s("dest_filename"), r.s("src_filename")));
            same(&v.encode(), r);
        }
        "storage:R40" => {
            // 6.16.1 echoes the request on success (captures README, discrepancy 1); a sender
            // must treat any successful answer as success, which is what it decodes to here.
            assert!(SyncLinkReq::decode(b).is_ok());
        }
        "storage-peer:9" => {
            let v = ReportServerId::decode(b, P).unwrap();
            assert_eq!(v.id, r.s("storage_id"));
            same(&v.encode(P), r);
        }
        "tracker:R101" | "tracker:R104" => {
            let v = StoreTarget::decode_any(b).unwrap();
            assert_eq!((v.group.as_str(), v.ip.as_str(), v.port), (r.s("group"), r.s("ip"), r.i("port")));
            assert_eq!(v.store_path_index as i64, r.i("store_path_index"));
            same(&v.encode(P), r);
            same(&v.encode(Profile::CLASSIC), r);
        }
        "tracker:R102" | "tracker:R103" => {
            let v = FetchTarget::decode_any(b).unwrap();
            assert_eq!((v.ip.as_str(), v.port), (r.s("ip"), r.i("port")));
            same(&v.encode(P), r);
            same(&v.encode(Profile::CLASSIC), r);
        }
        "tracker:R105" => {
            let v = FetchTargets::decode(b, P).unwrap();
            assert_eq!(v.servers.len(), r.v["decoded"]["servers"].as_array().unwrap().len());
            same(&v.encode(P), r);
        }
        "tracker:R106" | "tracker:R107" => {
            let v = StoreTargets::decode_any(b).unwrap();
            let want = r.v["decoded"]["servers"].as_array().unwrap();
            assert_eq!(v.servers.len(), want.len());
            assert_eq!(v.servers[1].ip, want[1][0].as_str().unwrap());
            same(&v.encode(P), r);
        }
        "client:11" | "client:23" => {
            let v: UploadHead = head(r);
            assert_eq!((v.file_size as i64, v.ext.as_str()), (r.i("file_size"), r.s("ext")));
            assert_eq!(v.store_path_index as i64, r.i("store_path_index"));
        }
        "client:21" => {
            let v: SlaveUploadHead = head(r);
            assert_eq!((v.prefix.as_str(), v.master_filename.as_str()), (r.s("prefix"), r.s("master_filename")));
        }
        "client:24" => {
            let v: AppendHead = head(r);
            assert_eq!(v.size as i64, r.i("append_size"));
        }
        "client:34" => {
            let v: ModifyHead = head(r);
            assert_eq!((v.offset as i64, v.size as i64), (r.i("file_offset"), r.i("data_size")));
        }
        "storage:R11" | "storage:R23" | "storage:R21" | "storage:R38" => {
            let v = FileIdResp::decode(b).unwrap();
            assert_eq!((v.group.as_str(), v.filename.as_str()), (r.s("group"), r.s("filename")));
            same(&v.encode(), r);
            fdfs_core::file_id::FileId::parse(&v.file_id()).expect("server-made IDs parse");
        }
        "client:102" | "client:103" | "client:105" | "client:12" | "client:15" | "client:22" => {
            let v = FileReq::decode(b).unwrap();
            assert_eq!((v.group.as_str(), v.filename.as_str()), (r.s("group"), r.s("filename")));
            same(&v.encode(), r);
            if r.kind() == "client:22" {
                assert_eq!(h.status as i64, r.i("flags"));
            }
        }
        "client:14" => {
            let v = DownloadReq::decode(b).unwrap();
            assert_eq!((v.offset as i64, v.bytes as i64), (r.i("offset"), r.i("download_bytes")));
            same(&v.encode(), r);
        }
        "storage:R14" => assert_eq!(b.len() as u64, r.body_len().min(64)),
        "storage:R22" => {
            let v = FileInfoResp::decode_any(b).unwrap();
            assert_eq!((v.file_size, v.crc32), (r.i("file_size"), r.i("crc32")));
            assert_eq!(v.source_ip, r.s("source_ip"));
            same(&v.encode(P), r);
        }
        "client:38" => {
            assert_eq!(decode_bare_filename(b).unwrap(), r.s("filename"));
        }
        "client:13" => {
            let v = SetMetadataReq::decode(b).unwrap();
            let op = if v.op == MetaOp::Merge { "M" } else { "O" };
            assert_eq!(op, r.s("op_flag"));
            let meta = parse_metadata(&v.meta);
            let want = r.v["decoded"]["metadata"].as_array().unwrap();
            assert_eq!(meta.len(), want.len());
            assert_eq!(meta[0].0, want[0][0].as_str().unwrap().as_bytes());
            same(&v.encode(), r);
        }
        "storage:R15" => {
            let meta = parse_metadata(b);
            let want = r.v["decoded"]["metadata"].as_array().unwrap();
            assert_eq!(meta.len(), want.len());
            assert_eq!(pack_metadata(&meta), b, "stored metadata is sorted and re-packs exactly");
        }
        "client:36" => {
            let v = TruncateReq::decode(b).unwrap();
            assert_eq!(v.new_size as i64, r.i("new_size"));
            same(&v.encode(), r);
        }
        "client:104" | "client:107" | "client:90" => {
            let v = GroupReq::decode(b).unwrap();
            assert_eq!(v.group, r.s("group"));
            same(&v.encode(), r);
        }
        "client:92" => {
            let v = GroupStorageReq::decode(b).unwrap();
            assert_eq!(v.storage_id.as_deref().unwrap_or(""), r.s("storage_id"));
            same(&v.encode(), r);
        }
        "tracker:R90" | "tracker:R91" => {
            let (v, p) = GroupStat::decode_list_any(b).unwrap();
            assert_eq!(p, P);
            let w = &r.v["decoded"]["groups"][0];
            assert_eq!(v[0].group, w["group"].as_str().unwrap());
            assert_eq!(v[0].reserved_mb, w["reserved_mb"].as_i64().unwrap());
            assert_eq!(v[0].writable_count, w["writable_server_count"].as_i64().unwrap());
            same(&GroupStat::encode_list(&v, p), r);
        }
        "tracker:R92" => {
            let (v, p) = StorageStat::decode_list_any(b).unwrap();
            assert_eq!(p, P);
            let w = &r.v["decoded"]["storages"];
            assert_eq!(v.len(), w.as_array().unwrap().len());
            assert_eq!(v[0].version, w[0]["version"].as_str().unwrap());
            assert_eq!(v[0].join_time, w[0]["join_time"].as_i64().unwrap());
            same(&StorageStat::encode_list(&v, p), r);
        }
        other => panic!("no check for {other}"),
    }
}

#[test]
fn every_captured_packet_decodes_and_re_encodes() {
    let text = common::capture("fastdfs-6.16.1.jsonl");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        let raw = unhex(v["header_hex"].as_str().unwrap());
        let header = Header::decode(raw[..HEADER_LEN].try_into().unwrap(), u64::MAX >> 1).unwrap();
        assert_eq!(header.encode()[..], raw[..]);
        assert_eq!(header.pkg_len, v["body_len"].as_u64().unwrap(), "line {n}");
        assert_eq!(header.cmd as u64, v["cmd"].as_u64().unwrap());
        let body = unhex(v["body_hex"].as_str().unwrap());
        let rec = Rec { v, header, body };
        if !rec.truncated() {
            assert_eq!(rec.body.len() as u64, rec.body_len());
        }
        let kind = rec.kind();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&rec)));
        if res.is_err() {
            panic!("line {n} ({kind}, exchange {}) failed", rec.v["exchange"]);
        }
        *counts.entry(kind).or_default() += 1;
        total += 1;
    }
    assert_eq!(total, 790);
    // Every captured request kind was checked.
    for k in [
        "client:11",
        "client:13",
        "client:21",
        "client:22",
        "client:24",
        "client:34",
        "client:38",
        "client:92",
        "client:105",
        "storage-peer:16",
        "storage-peer:37",
        "storage-peer:40",
        "storage:89",
    ] {
        assert!(counts.contains_key(k), "{k} not seen");
    }
}
