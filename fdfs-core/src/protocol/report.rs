//! Storage → tracker messages (PROTOCOL.md §3.6): join, beats and reports, sync-source
//! bookkeeping, identity look-ups.

use bytes::{BufMut, BytesMut};

use super::codec::{expect_len, put_fixed, DecodeError, DecodeResult, Reader};
use super::stat::StatBuff;
use super::wire::{wire_struct, Ip, StatusByte, Text, I32, I64};
use super::{Layout, Profile, GROUP_LEN, MAX_TRACKERS};

wire_struct! {
    /// `FDFSStorageBrief`: 37 bytes (classic) or 67 (6.11+).
    pub struct Brief {
        status: StatusByte,
        port: I32,
        id: Text<16>,
        ip: Ip,
    }
}

/// 81 STORAGE_JOIN request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinReq {
    pub group: String,
    pub storage_port: i64,
    /// Classic only (`http.server_port`).
    pub storage_http_port: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub upload_priority: i64,
    pub join_time: i64,
    pub up_time: i64,
    pub version: String,
    /// Classic only.
    pub domain_name: String,
    pub init_flag: bool,
    /// The status the storage last learnt for itself (−1 = unknown).
    pub status: i8,
    /// 6.11+: the storage's own ID when `use_storage_id`.
    pub storage_id: String,
    /// The address by which the storage reached this tracker.
    pub current_tracker_ip: String,
    /// Every tracker of the storage's `tracker_server` list, as `ip[,ip2]:port`.
    pub trackers: Vec<String>,
}

impl JoinReq {
    /// Length of the fixed part (233 classic, 279 in 6.11, 281 in 6.12, 145 from 6.13).
    pub const fn fixed_len(l: Layout) -> usize {
        let p = Profile::of(l, false);
        let http = if l.has_http_fields() { 8 + 128 } else { 0 };
        let id = if matches!(l, Layout::Classic) { 0 } else { 16 };
        17 + 8 + 5 * 8 + p.version_size() + 2 + id + p.ip_addr_size() + 8 + http
    }

    /// One fixed tracker entry (`IP_ADDRESS_SIZE * 2 + 8`) up to 6.13; text lines after.
    const fn tracker_entry_len(l: Layout) -> usize {
        2 * Profile::of(l, false).ip_addr_size() + 8
    }

    /// The generation of a JOIN body, from its shape: every generation has its own fixed length
    /// and tracker-entry size, and no two of those length equations meet. 6.15 and 6.16 share
    /// one layout; the version text tells them apart.
    pub fn detect(body: &[u8]) -> Option<Layout> {
        for l in [Layout::Classic, Layout::V611, Layout::V612, Layout::V613] {
            let (fixed, entry) = (Self::fixed_len(l), Self::tracker_entry_len(l));
            if body.len() <= fixed || !(body.len() - fixed).is_multiple_of(entry) {
                continue;
            }
            let count = i64::from_be_bytes(body[fixed - 8..fixed].try_into().expect("8 bytes"));
            // A 6.15+ text list can have a fixed-looking length; fixed entries are NUL padded.
            let padded = l != Layout::V613 || body[fixed..].contains(&0);
            if count >= 1 && count as usize * entry == body.len() - fixed && padded {
                return Some(l);
            }
        }
        let fixed = Self::fixed_len(Layout::V616);
        if body.len() <= fixed {
            return None;
        }
        let version = std::str::from_utf8(&body[65..73]).unwrap_or("").trim_end_matches('\0');
        Some(match Layout::from_version(version) {
            Some(Layout::V615) => Layout::V615,
            _ => Layout::V616,
        })
    }

    pub fn encode(&self, p: Profile) -> BytesMut {
        let l = p.layout;
        let mut b = BytesMut::with_capacity(Self::fixed_len(l) + Self::tracker_entry_len(l) * self.trackers.len());
        put_fixed(&mut b, &self.group, GROUP_LEN + 1);
        b.put_i64(self.storage_port);
        if l.has_http_fields() {
            b.put_i64(self.storage_http_port);
        }
        b.put_i64(self.store_path_count);
        b.put_i64(self.subdir_count_per_path);
        b.put_i64(self.upload_priority);
        b.put_i64(self.join_time);
        b.put_i64(self.up_time);
        put_fixed(&mut b, &self.version, p.version_size());
        if l.has_http_fields() {
            put_fixed(&mut b, &self.domain_name, 128);
        }
        b.put_u8(self.init_flag as u8);
        b.put_i8(self.status);
        if l != Layout::Classic {
            put_fixed(&mut b, &self.storage_id, 16);
        }
        put_fixed(&mut b, &self.current_tracker_ip, p.ip_addr_size());
        b.put_i64(self.trackers.len() as i64);
        for t in &self.trackers {
            if l.join_has_fixed_tracker_entries() {
                put_fixed(&mut b, t, Self::tracker_entry_len(l));
            } else {
                b.put_slice(t.as_bytes());
                b.put_u8(b'\n');
            }
        }
        b
    }

    pub fn decode(body: &[u8], p: Profile) -> DecodeResult<Self> {
        let l = p.layout;
        let fixed = Self::fixed_len(l);
        if body.len() < fixed {
            return Err(DecodeError::Short { need: fixed, got: body.len() });
        }
        let mut r = Reader::new(body);
        let mut j = JoinReq { group: r.fixed_str(GROUP_LEN + 1)?, ..Default::default() };
        j.storage_port = r.i64()?;
        if l.has_http_fields() {
            j.storage_http_port = r.i64()?;
        }
        j.store_path_count = r.i64()?;
        j.subdir_count_per_path = r.i64()?;
        j.upload_priority = r.i64()?;
        j.join_time = r.i64()?;
        j.up_time = r.i64()?;
        j.version = r.fixed_str(p.version_size())?;
        if l.has_http_fields() {
            j.domain_name = r.fixed_str(128)?;
        }
        j.init_flag = r.u8()? != 0;
        j.status = r.i8()?;
        if l != Layout::Classic {
            j.storage_id = r.fixed_str(16)?;
        }
        j.current_tracker_ip = r.fixed_str(p.ip_addr_size())?;
        let count = r.i64()?;
        if !(1..=MAX_TRACKERS as i64).contains(&count) {
            return Err(DecodeError::OutOfRange { field: "tracker_count", value: count });
        }
        let count = count as usize;
        let entry = Self::tracker_entry_len(l);
        if l.join_has_fixed_tracker_entries() {
            expect_len(body, fixed + entry * count)?;
            for _ in 0..count {
                j.trackers.push(r.fixed_str(entry)?);
            }
        } else {
            if body.len() > fixed + entry * count {
                return Err(DecodeError::BadLength { len: body.len(), why: "tracker list" });
            }
            let text = r.rest_str()?;
            j.trackers = text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
            if j.trackers.len() != count {
                return Err(DecodeError::Invalid("tracker_count differs from the list"));
            }
        }
        r.finish()?;
        let texts = [&j.domain_name, &j.version, &j.storage_id, &j.current_tracker_ip];
        if !texts.into_iter().chain(&j.trackers).all(|t| super::is_safe_token(t)) {
            return Err(DecodeError::Invalid("control characters, spaces or delimiters in a JOIN text field"));
        }
        Ok(j)
    }
}

wire_struct! {
    /// 81 answer (17 bytes, V6.03+).
    pub struct JoinResp {
        status: StatusByte,
        sync_src_id: Text<16>,
    }
}

/// Flag bits of the change-notification answer to 83, 84, 89.
pub mod notify_flags {
    pub const LEADER: u8 = 0x01;
    pub const TRUNK: u8 = 0x02;
    pub const GROUP: u8 = 0x04;
}

/// Answer to BEAT, REPORT_DISK_USAGE and SYNC_REPORT (§3.6.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeNotify {
    pub leader: Option<Brief>,
    pub trunk: Option<Brief>,
    pub group: Option<Vec<Brief>>,
}

impl ChangeNotify {
    pub fn encode(&self, p: Profile) -> BytesMut {
        let mut b = BytesMut::with_capacity(1 + p.brief_len() * 4);
        let mut flags = 0;
        if self.leader.is_some() {
            flags |= notify_flags::LEADER;
        }
        if self.trunk.is_some() {
            flags |= notify_flags::TRUNK;
        }
        if self.group.is_some() {
            flags |= notify_flags::GROUP;
        }
        b.put_u8(flags);
        for brief in self.leader.iter().chain(self.trunk.iter()) {
            brief.put(&mut b, p);
        }
        for brief in self.group.iter().flatten() {
            brief.put(&mut b, p);
        }
        b
    }

    pub fn decode(body: &[u8], p: Profile) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let flags = r.u8()?;
        let mut n = ChangeNotify::default();
        if flags & notify_flags::LEADER != 0 {
            n.leader = Some(Brief::read(&mut r, p)?);
        }
        if flags & notify_flags::TRUNK != 0 {
            n.trunk = Some(Brief::read(&mut r, p)?);
        }
        if flags & notify_flags::GROUP != 0 {
            let len = p.brief_len();
            if !r.remaining().is_multiple_of(len) {
                return Err(DecodeError::BadLength { len: body.len(), why: "brief list" });
            }
            let mut list = Vec::with_capacity(r.remaining() / len);
            while r.remaining() > 0 {
                list.push(Brief::read(&mut r, p)?);
            }
            n.group = Some(list);
        }
        r.finish()?;
        Ok(n)
    }
}

/// 83 BEAT: empty, or the counters when they changed.
pub fn decode_beat(body: &[u8]) -> DecodeResult<Option<StatBuff>> {
    match body.len() {
        0 => Ok(None),
        StatBuff::LEN => Ok(Some(StatBuff::read(&mut Reader::new(body))?)),
        len => Err(DecodeError::BadLength { len, why: "beat body is 0 or 348 bytes" }),
    }
}

pub fn encode_beat(stat: Option<&StatBuff>) -> BytesMut {
    let mut b = BytesMut::with_capacity(StatBuff::LEN);
    if let Some(s) = stat {
        s.put(&mut b);
    }
    b
}

/// One store path in 84 REPORT_DISK_USAGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathUsage {
    pub total_mb: i64,
    pub free_mb: i64,
}

pub fn encode_disk_usage(paths: &[PathUsage]) -> BytesMut {
    let mut b = BytesMut::with_capacity(16 * paths.len());
    for u in paths {
        b.put_i64(u.total_mb);
        b.put_i64(u.free_mb);
    }
    b
}

/// The tracker checks the count against the group's `store_path_count`.
pub fn decode_disk_usage(body: &[u8], store_path_count: usize) -> DecodeResult<Vec<PathUsage>> {
    expect_len(body, 16 * store_path_count)?;
    let mut r = Reader::new(body);
    (0..store_path_count).map(|_| Ok(PathUsage { total_mb: r.i64()?, free_mb: r.i64()? })).collect()
}

/// One entry of 89 SYNC_REPORT: the last source timestamp applied from `peer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncTimestamp {
    pub peer_id: String,
    pub timestamp: i32,
}

pub fn encode_sync_report(entries: &[SyncTimestamp]) -> BytesMut {
    let mut b = BytesMut::with_capacity(20 * entries.len());
    for e in entries {
        put_fixed(&mut b, &e.peer_id, 16);
        b.put_i32(e.timestamp);
    }
    b
}

pub fn decode_sync_report(body: &[u8]) -> DecodeResult<Vec<SyncTimestamp>> {
    if body.is_empty() || !body.len().is_multiple_of(20) {
        return Err(DecodeError::BadLength { len: body.len(), why: "n × 20-byte entries" });
    }
    let mut r = Reader::new(body);
    let mut out = Vec::with_capacity(body.len() / 20);
    while r.remaining() > 0 {
        out.push(SyncTimestamp { peer_id: r.fixed_str(16)?, timestamp: r.i32()? });
    }
    Ok(out)
}

/// 85 STORAGE_REPLICA_CHG: up to 32 briefs.
pub fn decode_briefs(body: &[u8], p: Profile) -> DecodeResult<Vec<Brief>> {
    let len = p.brief_len();
    if !body.len().is_multiple_of(len) || body.len() / len > super::MAX_SERVERS_EACH_GROUP {
        return Err(DecodeError::BadLength { len: body.len(), why: "n ≤ 32 briefs" });
    }
    super::tracker::decode_records(body, len, |r| Brief::read(r, p))
}

pub fn encode_briefs(briefs: &[Brief], p: Profile) -> BytesMut {
    let mut b = BytesMut::with_capacity(briefs.len() * p.brief_len());
    for brief in briefs {
        brief.put(&mut b, p);
    }
    b
}

wire_struct! {
    /// 86 SYNC_SRC_REQ request: which storage should fill `dest_id`?
    pub struct SyncSrcReq {
        group: Text<16>,
        dest_id: Text<16>,
    }
}

wire_struct! {
    /// Answer to 86/87/79 (when not empty) and the 88 SYNC_NOTIFY request.
    pub struct SyncSource {
        src_id: Text<16>,
        until_timestamp: I64,
    }
}

impl SyncSource {
    /// The answers are empty when there is no source.
    pub fn decode_opt(body: &[u8]) -> DecodeResult<Option<Self>> {
        if body.is_empty() {
            Ok(None)
        } else {
            Self::decode(body, Profile::CLASSIC).map(Some)
        }
    }
}

wire_struct! {
    /// 76 REPORT_STATUS: a peer's status as the sender sees it.
    pub struct ReportStatusReq {
        group: Text<16>,
        brief: BriefKind,
    }
}

/// Lets `Brief` be a field of another wire struct.
#[derive(Debug)]
pub struct BriefKind;

impl super::wire::FieldKind for BriefKind {
    type Value = Brief;
    fn get(r: &mut Reader<'_>, p: Profile) -> DecodeResult<Brief> {
        Brief::read(r, p)
    }
    fn put(v: &Brief, buf: &mut BytesMut, p: Profile) {
        v.put(buf, p)
    }
    fn len(p: Profile) -> usize {
        p.brief_len()
    }
}

wire_struct! {
    /// 59 CHANGE_STATUS.
    pub struct ChangeStatusReq {
        status: StatusByte,
    }
}

/// 70 GET_SERVER_ID / 71 GET_STATUS request: group + the storage's address (classic: an
/// optional IP, the peer address when absent; 6.16: mandatory `ip:port`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageLookupReq {
    pub group: String,
    pub addr: String,
}

impl StorageLookupReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(GROUP_LEN + self.addr.len());
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.addr.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() < GROUP_LEN || body.len() > GROUP_LEN + 52 {
            return Err(DecodeError::BadLength { len: body.len(), why: "group[16] + ≤52-byte addr" });
        }
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let addr = r.rest_str()?;
        Ok(Self { group, addr })
    }
}

/// 60 GET_MY_IP request: classic `group[16]`; 6.16 `group[17]` + port (i32).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetMyIpReq {
    pub group: String,
    pub port: i32,
}

impl GetMyIpReq {
    pub fn encode(&self, p: Profile) -> BytesMut {
        let mut b = BytesMut::with_capacity(21);
        if p.layout == Layout::V616 {
            put_fixed(&mut b, &self.group, GROUP_LEN + 1);
            b.put_i32(self.port);
        } else {
            put_fixed(&mut b, &self.group, GROUP_LEN);
        }
        b
    }

    /// Accepts both layouts (16 or 21 bytes).
    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let v = match body.len() {
            16 => Self { group: r.fixed_str(GROUP_LEN)?, port: 0 },
            21 => Self { group: r.fixed_str(GROUP_LEN + 1)?, port: r.i32()? },
            len => return Err(DecodeError::BadLength { len, why: "16 or 21 bytes" }),
        };
        r.finish()?;
        Ok(v)
    }
}

/// 109 GET_GROUP_NAME request: optional IP text + port (i32).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetGroupNameReq {
    pub ip: String,
    pub port: i32,
}

impl GetGroupNameReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(self.ip.len() + 4);
        b.put_slice(self.ip.as_bytes());
        b.put_i32(self.port);
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() < 4 || body.len() > 4 + 46 {
            return Err(DecodeError::BadLength { len: body.len(), why: "ip text + port i32" });
        }
        let (ip, port) = body.split_at(body.len() - 4);
        Ok(Self { ip: Reader::new(ip).rest_str()?, port: i32::from_be_bytes(port.try_into().expect("4 bytes")) })
    }
}

/// 69 FETCH_STORAGE_IDS request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchStorageIdsReq {
    pub start_index: i32,
    /// 6.11+ only.
    pub allow_empty: bool,
}

impl FetchStorageIdsReq {
    pub fn encode(&self, p: Profile) -> BytesMut {
        let mut b = BytesMut::with_capacity(5);
        b.put_i32(self.start_index);
        if p.layout != Layout::Classic {
            b.put_u8(self.allow_empty as u8);
        }
        b
    }

    /// The request for a tracker whose generation is not known, in the forms to try in turn:
    /// 6.11+ trackers (6.16.1 among them) refuse the 4-byte classic body with EINVAL, older
    /// ones the 5-byte one.
    pub fn forms(&self) -> [BytesMut; 2] {
        [self.encode(Profile::V6_16), self.encode(Profile::CLASSIC)]
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let start_index = r.i32()?;
        let allow_empty = match body.len() {
            4 => false,
            5 => r.u8()? != 0,
            len => return Err(DecodeError::BadLength { len, why: "4 or 5 bytes" }),
        };
        if start_index < 0 {
            return Err(DecodeError::OutOfRange { field: "start_index", value: start_index.into() });
        }
        Ok(Self { start_index, allow_empty })
    }
}

/// 69 answer: total count, count in this answer, then `id group host[:port][ rw=mode]\n` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageIdsPage {
    pub total: i32,
    pub lines: Vec<String>,
}

/// A storage ID table longer than this is not taken from a tracker (C keeps a few thousand).
pub const MAX_STORAGE_IDS: usize = 1 << 16;

impl StorageIdsPage {
    /// Adds this page to the lines fetched so far; true when the table is complete, a page
    /// came back empty, or [`MAX_STORAGE_IDS`] is reached (a tracker cannot make a client
    /// fetch without end).
    pub fn add_to(self, lines: &mut Vec<String>) -> bool {
        let got = self.lines.len();
        lines.extend(self.lines);
        got == 0 || lines.len() >= (self.total.max(0) as usize).min(MAX_STORAGE_IDS)
    }

    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(8 + self.lines.iter().map(|l| l.len() + 1).sum::<usize>());
        b.put_i32(self.total);
        b.put_i32(self.lines.len() as i32);
        for l in &self.lines {
            b.put_slice(l.as_bytes());
            b.put_u8(b'\n');
        }
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let total = r.i32()?;
        let count = r.i32()?;
        let lines: Vec<String> = r.rest_str()?.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
        if total < 0 || count < 0 || lines.len() != count as usize || count > total {
            return Err(DecodeError::Invalid("storage id counts"));
        }
        Ok(Self { total, lines })
    }
}

/// 77 CHANGELOG_REQ: empty on a joined connection, else `group[16]` + storage ID[16].
pub fn decode_changelog_req(body: &[u8]) -> DecodeResult<Option<SyncSrcReq>> {
    match body.len() {
        0 => Ok(None),
        _ => SyncSrcReq::decode(body, Profile::CLASSIC).map(Some),
    }
}

wire_struct! {
    /// 78 REPORT_IP_CHANGED.
    pub struct IpChangedReq {
        group: Text<16>,
        old_ip: Ip,
        new_ip: Ip,
    }
}

wire_struct! {
    /// 72 answer, 73 request.
    pub struct TrunkFid {
        trunk_file_id: I32,
    }
}

wire_struct! {
    /// 74 request.
    pub struct TrunkFree {
        free_mb: I64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join() -> JoinReq {
        JoinReq {
            group: "group1".into(),
            storage_port: 23000,
            storage_http_port: 8888,
            store_path_count: 1,
            subdir_count_per_path: 256,
            upload_priority: 10,
            join_time: 1_700_000_000,
            up_time: 1_700_000_100,
            version: "6.08".into(),
            domain_name: "".into(),
            init_flag: false,
            status: 7,
            storage_id: "".into(),
            current_tracker_ip: "127.0.0.1".into(),
            trackers: vec!["127.0.0.1:22122".into(), "127.0.0.10:22122".into()],
        }
    }

    #[test]
    fn every_generation_joins_in_its_own_shape_and_is_recognised() {
        let want_fixed = [233, 279, 281, 145, 145, 145];
        for (l, fixed) in Layout::ALL.into_iter().zip(want_fixed) {
            assert_eq!(JoinReq::fixed_len(l), fixed, "{l}");
            let p = Profile::of(l, false);
            let mut j = join();
            j.version = l.version_text().into();
            if l > Layout::Classic {
                j.storage_id = "100001".into();
            }
            if !l.has_http_fields() {
                j.storage_http_port = 0;
            }
            let b = j.encode(p);
            let entries = if l.join_has_fixed_tracker_entries() { 2 * (2 * p.ip_addr_size() + 8) } else { 33 };
            assert_eq!(b.len(), fixed + entries, "{l}");
            assert_eq!(JoinReq::detect(&b), Some(l), "{l}");
            assert_eq!(JoinReq::decode(&b, p).unwrap(), j, "{l}");
            // Any other generation's decoder refuses the body.
            for other in Layout::ALL.into_iter().filter(|o| Profile::of(*o, false) != p) {
                let same_shape = !other.join_has_fixed_tracker_entries() && !l.join_has_fixed_tracker_entries();
                if !same_shape {
                    assert!(JoinReq::decode(&b, Profile::of(other, false)).is_err(), "{l} read as {other}");
                }
            }
        }
        assert_eq!(JoinReq::detect(&[0u8; 100]), None);
    }

    #[test]
    fn join_classic_layout() {
        let j = join();
        let b = j.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 233 + 2 * 40);
        assert_eq!(&b[..7], b"group1\0");
        assert_eq!(&b[17..25], &23000i64.to_be_bytes());
        assert_eq!(&b[73..77], b"6.08");
        assert_eq!(b[207], 0);
        assert_eq!(b[208], 7);
        assert_eq!(&b[209..218], b"127.0.0.1");
        assert_eq!(&b[225..233], &2i64.to_be_bytes());
        assert_eq!(&b[233..248], b"127.0.0.1:22122");
        assert_eq!(JoinReq::decode(&b, Profile::CLASSIC).unwrap(), j);
        assert!(JoinReq::decode(&b[..b.len() - 1], Profile::CLASSIC).is_err());
    }

    #[test]
    fn join_v616_layout() {
        let mut j = join();
        j.storage_http_port = 0;
        j.version = "6.16.1".into();
        j.storage_id = "100001".into();
        let b = j.encode(Profile::V6_16);
        assert_eq!(b.len(), 145 + "127.0.0.1:22122\n127.0.0.10:22122\n".len());
        assert_eq!(&b[65..71], b"6.16.1");
        assert_eq!(&b[75..81], b"100001");
        assert_eq!(&b[137..145], &2i64.to_be_bytes());
        assert_eq!(JoinReq::decode(&b, Profile::V6_16).unwrap(), j);
    }

    #[test]
    fn join_rejects_absurd_tracker_count() {
        let mut b = join().encode(Profile::CLASSIC);
        b[225..233].copy_from_slice(&i64::MAX.to_be_bytes());
        assert!(matches!(JoinReq::decode(&b, Profile::CLASSIC), Err(DecodeError::OutOfRange { .. })));
    }

    #[test]
    fn join_resp_and_brief() {
        let r = JoinResp { status: crate::protocol::StorageStatus::Active, sync_src_id: "127.0.0.3".into() };
        let b = r.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 17);
        assert_eq!(b[0], 7);
        assert_eq!(JoinResp::decode(&b, Profile::CLASSIC).unwrap(), r);
        let brief = Brief {
            status: crate::protocol::StorageStatus::Active,
            port: 23000,
            id: "a".into(),
            ip: "127.0.0.2".into(),
        };
        let b = brief.encode(Profile::CLASSIC);
        assert_eq!(&b[..5], &[7, 0, 0, 0x59, 0xd8]);
        assert_eq!(b.len(), 37);
    }

    #[test]
    fn change_notify_non_leader_is_one_zero_byte() {
        let n = ChangeNotify::default();
        assert_eq!(&n.encode(Profile::V6_16)[..], &[0]);
        assert_eq!(ChangeNotify::decode(&[0], Profile::V6_16).unwrap(), n);
        assert!(ChangeNotify::decode(&[], Profile::V6_16).is_err());
    }

    #[test]
    fn change_notify_with_everything() {
        let brief = |id: &str| Brief {
            status: crate::protocol::StorageStatus::Active,
            port: 23000,
            id: id.into(),
            ip: id.into(),
        };
        let n = ChangeNotify {
            leader: Some(brief("127.0.0.1")),
            trunk: None,
            group: Some(vec![brief("127.0.0.2"), brief("127.0.0.3")]),
        };
        let b = n.encode(Profile::CLASSIC);
        assert_eq!(b[0], notify_flags::LEADER | notify_flags::GROUP);
        assert_eq!(b.len(), 1 + 3 * 37);
        assert_eq!(ChangeNotify::decode(&b, Profile::CLASSIC).unwrap(), n);
        assert!(ChangeNotify::decode(&b[..b.len() - 1], Profile::CLASSIC).is_err());
    }

    #[test]
    fn beat_disk_usage_and_sync_report() {
        assert_eq!(decode_beat(&[]).unwrap(), None);
        let mut s = StatBuff::default();
        s.counters.success_upload_count = 3;
        let b = encode_beat(Some(&s));
        assert_eq!(decode_beat(&b).unwrap(), Some(s));
        assert!(decode_beat(&[0; 10]).is_err());

        let u = [PathUsage { total_mb: 100, free_mb: 50 }];
        let b = encode_disk_usage(&u);
        assert_eq!(&b[..], &[0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 50]);
        assert_eq!(decode_disk_usage(&b, 1).unwrap(), u);
        assert!(decode_disk_usage(&b, 2).is_err());

        let e = vec![SyncTimestamp { peer_id: "127.0.0.3".into(), timestamp: 0x6553_F100 }];
        let b = encode_sync_report(&e);
        assert_eq!(&b[16..], &[0x65, 0x53, 0xF1, 0x00]);
        assert_eq!(decode_sync_report(&b).unwrap(), e);
        assert!(decode_sync_report(&b[..19]).is_err());
    }

    #[test]
    fn sync_source_messages() {
        let s = SyncSource { src_id: "127.0.0.2".into(), until_timestamp: 5 };
        let b = s.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 24);
        assert_eq!(SyncSource::decode_opt(&b).unwrap(), Some(s));
        assert_eq!(SyncSource::decode_opt(&[]).unwrap(), None);
        let req = SyncSrcReq { group: "group1".into(), dest_id: "127.0.0.3".into() };
        assert_eq!(SyncSrcReq::decode(&req.encode(Profile::CLASSIC), Profile::CLASSIC).unwrap(), req);
        assert_eq!(decode_changelog_req(&[]).unwrap(), None);
        assert!(decode_changelog_req(&[0; 31]).is_err());
    }

    #[test]
    fn identity_lookups() {
        let r = GetMyIpReq { group: "group1".into(), port: 23000 };
        assert_eq!(r.encode(Profile::CLASSIC).len(), 16);
        assert_eq!(r.encode(Profile::V6_16).len(), 21);
        assert_eq!(GetMyIpReq::decode(&r.encode(Profile::V6_16)).unwrap(), r);
        assert!(GetMyIpReq::decode(&[0; 17]).is_err());

        let g = GetGroupNameReq { ip: "127.0.0.2".into(), port: 23000 };
        assert_eq!(GetGroupNameReq::decode(&g.encode()).unwrap(), g);
        assert!(GetGroupNameReq::decode(&[0; 3]).is_err());

        let l = StorageLookupReq { group: "group1".into(), addr: "127.0.0.2:23000".into() };
        assert_eq!(StorageLookupReq::decode(&l.encode()).unwrap(), l);

        let f = FetchStorageIdsReq { start_index: 3, allow_empty: true };
        assert_eq!(&f.encode(Profile::V6_16)[..], &[0, 0, 0, 3, 1]);
        assert_eq!(FetchStorageIdsReq::decode(&f.encode(Profile::V6_16)).unwrap(), f);
        assert!(FetchStorageIdsReq::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());

        let page = StorageIdsPage { total: 2, lines: vec!["100001 group1 127.0.0.2".into()] };
        let b = page.encode();
        assert_eq!(&b[..8], &[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(StorageIdsPage::decode(&b).unwrap(), page);
    }

    #[test]
    fn small_fixed_messages() {
        let r = ReportStatusReq {
            group: "group1".into(),
            brief: Brief {
                status: crate::protocol::StorageStatus::Syncing,
                port: 23000,
                id: "x".into(),
                ip: "127.0.0.3".into(),
            },
        };
        let b = r.encode(Profile::V6_16);
        assert_eq!(b.len(), 16 + 67);
        assert_eq!(ReportStatusReq::decode(&b, Profile::V6_16).unwrap(), r);
        assert_eq!(
            &ChangeStatusReq { status: crate::protocol::StorageStatus::Offline }.encode(Profile::CLASSIC)[..],
            &[5]
        );
        assert_eq!(IpChangedReq::wire_len(Profile::CLASSIC), 48);
        assert_eq!(&TrunkFid { trunk_file_id: 1 }.encode(Profile::CLASSIC)[..], &[0, 0, 0, 1]);
        assert_eq!(TrunkFree::wire_len(Profile::CLASSIC), 8);
        let briefs = vec![Brief::default(); 2];
        let b = encode_briefs(&briefs, Profile::CLASSIC);
        assert_eq!(decode_briefs(&b, Profile::CLASSIC).unwrap(), briefs);
        assert!(decode_briefs(&vec![0; 33 * 37], Profile::CLASSIC).is_err());
    }

    #[test]
    fn storage_id_pages_stop_at_the_total_an_empty_page_or_the_cap() {
        let page = |total, n: usize| StorageIdsPage { total, lines: vec!["1 group1 127.0.0.1".to_owned(); n] };
        let mut lines = Vec::new();
        assert!(!page(3, 2).add_to(&mut lines));
        assert!(page(3, 1).add_to(&mut lines));
        assert!(page(10, 0).add_to(&mut Vec::new()), "an empty page ends it");
        let mut lines = vec![String::new(); MAX_STORAGE_IDS - 1];
        assert!(page(i32::MAX, 1).add_to(&mut lines), "a tracker claiming billions is cut off");
    }
}
