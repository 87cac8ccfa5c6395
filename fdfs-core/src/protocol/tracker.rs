//! Client ↔ tracker messages (PROTOCOL.md §3.2 to §3.5).

use bytes::{BufMut, BytesMut};

use super::codec::{expect_len, put_fixed, put_i64, DecodeError, DecodeResult, Reader};
use super::wire::{wire_struct, QueryIp, StatusByte, Text, I64, U8};
use super::{Profile, GROUP_LEN, MAX_FILENAME_LEN};

/// A body that is exactly one `group[16]` (104, 107, 90, 108).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupReq {
    pub group: String,
}

impl GroupReq {
    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        expect_len(body, GROUP_LEN)?;
        Ok(Self { group: Reader::new(body).fixed_str(GROUP_LEN)? })
    }

    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(GROUP_LEN);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b
    }
}

/// `group[16]` + remote filename: the tracker fetch/update queries (102, 103, 105) and the
/// storage commands DELETE, GET_METADATA, QUERY_FILE_INFO (12, 15, 22).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileReq {
    pub group: String,
    pub filename: String,
}

impl FileReq {
    /// The tracker requires `22 ≤ len(filename) < 128`; storages check names themselves.
    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() <= GROUP_LEN || body.len() >= GROUP_LEN + MAX_FILENAME_LEN {
            return Err(DecodeError::BadLength { len: body.len(), why: "group[16] + 1..127-byte filename" });
        }
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let filename = r.rest_str()?;
        Ok(Self { group, filename })
    }

    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(GROUP_LEN + self.filename.len());
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b
    }
}

wire_struct! {
    /// Answer to 101/104: where to upload.
    pub struct StoreTarget {
        group: Text<16>,
        ip: QueryIp,
        port: I64,
        store_path_index: U8,
    }
}

wire_struct! {
    /// Answer to 102/103: where to read or update.
    pub struct FetchTarget {
        group: Text<16>,
        ip: QueryIp,
        port: I64,
    }
}

/// Client-side decoders accept both IPv4 and IPv6 answer widths, told apart by length.
const CLIENT_PROFILES: [Profile; 2] = [Profile::V6_16, Profile::V6_16_IPV6];

impl StoreTarget {
    pub fn decode_any(body: &[u8]) -> DecodeResult<Self> {
        decode_by_len(body, |p| (Self::wire_len(p), Self::decode(body, p)))
    }
}

impl FetchTarget {
    pub fn decode_any(body: &[u8]) -> DecodeResult<Self> {
        decode_by_len(body, |p| (Self::wire_len(p), Self::decode(body, p)))
    }
}

fn decode_by_len<T>(body: &[u8], try_profile: impl Fn(Profile) -> (usize, DecodeResult<T>)) -> DecodeResult<T> {
    for p in CLIENT_PROFILES {
        let (len, res) = try_profile(p);
        if len == body.len() {
            return res;
        }
    }
    Err(DecodeError::BadLength { len: body.len(), why: "matches no known answer width" })
}

/// One storage in a multi-server answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerAddr {
    pub ip: String,
    pub port: i64,
}

/// Answer to 106/107: every writable storage of the chosen group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreTargets {
    pub group: String,
    pub servers: Vec<ServerAddr>,
    pub store_path_index: u8,
}

impl StoreTargets {
    pub fn encode(&self, p: Profile) -> BytesMut {
        let w = p.query_ip_width();
        let mut b = BytesMut::with_capacity(GROUP_LEN + self.servers.len() * (w + 8) + 1);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        for s in &self.servers {
            put_fixed(&mut b, &s.ip, w);
            put_i64(&mut b, s.port);
        }
        b.put_u8(self.store_path_index);
        b
    }

    pub fn decode(body: &[u8], p: Profile) -> DecodeResult<Self> {
        let w = p.query_ip_width();
        let n = body.len().checked_sub(GROUP_LEN + 1).filter(|n| n % (w + 8) == 0);
        let Some(n) = n.map(|n| n / (w + 8)).filter(|&n| n > 0) else {
            return Err(DecodeError::BadLength { len: body.len(), why: "16 + n*(W+8) + 1" });
        };
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(ServerAddr { ip: r.fixed_str(w)?, port: r.i64()? });
        }
        let store_path_index = r.u8()?;
        r.finish()?;
        Ok(Self { group, servers, store_path_index })
    }

    /// As the Java 1.39 client does: IPv6 width first, then IPv4.
    pub fn decode_any(body: &[u8]) -> DecodeResult<Self> {
        Self::decode(body, Profile::V6_16_IPV6).or_else(|_| Self::decode(body, Profile::V6_16))
    }
}

/// Answer to 105: every storage that can serve the file.
///
/// Up to 6.15 only the first server carries a port (`16 + W + 8 + (n−1)·W`); 6.16 gives each
/// one its own (`16 + n·(W+8)`). With one server both are the same 39 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchTargets {
    pub group: String,
    pub servers: Vec<ServerAddr>,
}

impl FetchTargets {
    pub fn encode(&self, p: Profile) -> BytesMut {
        let w = p.query_ip_width();
        let mut b = BytesMut::with_capacity(GROUP_LEN + self.servers.len() * (w + 8));
        put_fixed(&mut b, &self.group, GROUP_LEN);
        for (i, s) in self.servers.iter().enumerate() {
            put_fixed(&mut b, &s.ip, w);
            if i == 0 || p.layout == super::Layout::V616 {
                put_i64(&mut b, s.port);
            }
        }
        b
    }

    pub fn decode(body: &[u8], p: Profile) -> DecodeResult<Self> {
        let w = p.query_ip_width();
        let bad = DecodeError::BadLength { len: body.len(), why: "fetch-all answer" };
        let first = GROUP_LEN + w + 8;
        let extra = body.len().checked_sub(first).ok_or(bad.clone())?;
        let per = if p.layout == super::Layout::V616 { w + 8 } else { w };
        if extra % per != 0 {
            return Err(bad);
        }
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let ip = r.fixed_str(w)?;
        let port = r.i64()?;
        let mut servers = Vec::with_capacity(1 + extra / per);
        servers.push(ServerAddr { ip, port });
        for _ in 0..extra / per {
            let ip = r.fixed_str(w)?;
            let port = if per == w { port } else { r.i64()? };
            servers.push(ServerAddr { ip, port });
        }
        r.finish()?;
        Ok(Self { group, servers })
    }
}

/// 92 request: group, optionally narrowed to one storage ID (1..15 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStorageReq {
    pub group: String,
    pub storage_id: Option<String>,
}

impl GroupStorageReq {
    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() < GROUP_LEN || body.len() >= GROUP_LEN + 16 {
            return Err(DecodeError::BadLength { len: body.len(), why: "group[16] + 0..15-byte id" });
        }
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let id = r.rest_str()?;
        Ok(Self { group, storage_id: (!id.is_empty()).then_some(id) })
    }

    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(GROUP_LEN + 16);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        if let Some(id) = &self.storage_id {
            b.put_slice(id.as_bytes());
        }
        b
    }

    /// 93 DELETE_STORAGE needs the ID.
    pub fn decode_with_id(body: &[u8]) -> DecodeResult<Self> {
        let v = Self::decode(body)?;
        if v.storage_id.is_none() {
            return Err(DecodeError::Invalid("missing storage id"));
        }
        Ok(v)
    }
}

/// 94 answer: the trunk server ID followed by a NUL.
pub fn encode_trunk_server_id(id: &str) -> BytesMut {
    let mut b = BytesMut::with_capacity(id.len() + 1);
    b.put_slice(id.as_bytes());
    b.put_u8(0);
    b
}

pub fn decode_trunk_server_id(body: &[u8]) -> DecodeResult<String> {
    match body.split_last() {
        Some((0, id)) => Reader::new(id).rest_str(),
        _ => Err(DecodeError::Invalid("trunk server id must end with NUL")),
    }
}

/// The `filter_by` bits of the cluster-stat requests (96, 97, 98), as C defines them.
pub mod stat_filter {
    /// 96: filter on `is_active`.
    pub const TRACKER_IS_ACTIVE: u8 = 1;
    /// 96: filter on `is_leader`.
    pub const TRACKER_IS_LEADER: u8 = 2;
    /// 97: filter on the trunk-server flag.
    pub const STORAGE_IS_TRUNK_SERVER: u8 = 1;
    /// 97: filter on the status (`op_type` `=` or `!`).
    pub const STORAGE_STATUS: u8 = 2;
    /// 98: filter on disk space available.
    pub const VOLUME_DISK_AVAILABLE: u8 = 1;
    /// 98: filter on trunk space available.
    pub const VOLUME_TRUNK_AVAILABLE: u8 = 2;
    /// 98: filter on either.
    pub const VOLUME_SPACE_AVAILABLE: u8 = 4;
}

wire_struct! {
    /// 96 request (6.16): filter on tracker flags.
    pub struct TrackerClusterStatReq {
        filter_by: U8,
        is_active: U8,
        is_leader: U8,
    }
}

wire_struct! {
    /// One 90-byte record of the 96 answer.
    pub struct TrackerClusterStat {
        host: Text<52>,
        is_leader: U8,
        is_active: U8,
        conn_alloc: super::wire::I32,
        conn_current: super::wire::I32,
        conn_max: super::wire::I32,
        version: Text<8>,
        up_time: I64,
        last_heart_beat_time: I64,
    }
}

wire_struct! {
    /// 97 request (6.16).
    pub struct StorageClusterStatReq {
        filter_by: U8,
        op_type: U8,
        status: StatusByte,
        is_trunk_server: U8,
    }
}

wire_struct! {
    /// One 106-byte record of the 97 answer (after a 6-byte head).
    pub struct StorageClusterStat {
        id: Text<16>,
        host: Text<52>,
        is_trunk_server: U8,
        status: StatusByte,
        conn_alloc: super::wire::I32,
        conn_current: super::wire::I32,
        conn_max: super::wire::I32,
        version: Text<8>,
        up_time: I64,
        last_heart_beat_time: I64,
    }
}

wire_struct! {
    /// 98 request (6.16).
    pub struct VolumeStatReq {
        filter_by: U8,
        disk_available: U8,
        trunk_available: U8,
        space_available: U8,
    }
}

wire_struct! {
    /// One 59-byte record of the 98 answer (after a 5-byte head).
    pub struct VolumeStat {
        group: Text<17>,
        total_mb: I64,
        free_mb: I64,
        reserved_mb: I64,
        avail_mb: I64,
        trunk_free_mb: I64,
        is_disk_available: U8,
        is_trunk_available: U8,
    }
}

/// 96 answer: a 1-byte count, then the 90-byte records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerClusterStats {
    pub trackers: Vec<TrackerClusterStat>,
}

impl TrackerClusterStats {
    pub fn encode(&self) -> BytesMut {
        let p = Profile::default();
        let mut b = BytesMut::with_capacity(1 + self.trackers.len() * TrackerClusterStat::wire_len(p));
        b.put_u8(self.trackers.len().min(u8::MAX as usize) as u8);
        for t in self.trackers.iter().take(u8::MAX as usize) {
            t.put(&mut b, p);
        }
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let p = Profile::default();
        let (&count, rest) = body.split_first().ok_or(DecodeError::Short { need: 1, got: 0 })?;
        expect_len(rest, count as usize * TrackerClusterStat::wire_len(p))?;
        Ok(Self {
            trackers: decode_records(rest, TrackerClusterStat::wire_len(p), |r| TrackerClusterStat::read(r, p))?,
        })
    }
}

/// 97 answer: use_storage_id, use_trunk_file, an i32 count, then the 106-byte records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClusterStats {
    pub use_storage_id: bool,
    pub use_trunk_file: bool,
    pub storages: Vec<StorageClusterStat>,
}

impl StorageClusterStats {
    pub fn encode(&self) -> BytesMut {
        let p = Profile::default();
        let mut b = BytesMut::with_capacity(6 + self.storages.len() * StorageClusterStat::wire_len(p));
        b.put_u8(self.use_storage_id as u8);
        b.put_u8(self.use_trunk_file as u8);
        b.put_i32(self.storages.len() as i32);
        for s in &self.storages {
            s.put(&mut b, p);
        }
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let p = Profile::default();
        let mut r = Reader::new(body);
        let (use_storage_id, use_trunk_file, count) = (r.u8()? != 0, r.u8()? != 0, r.i32()?);
        let rest = &body[6..];
        if count < 0 || rest.len() != count as usize * StorageClusterStat::wire_len(p) {
            return Err(DecodeError::BadLength { len: body.len(), why: "6 + count × 106" });
        }
        let storages = decode_records(rest, StorageClusterStat::wire_len(p), |r| StorageClusterStat::read(r, p))?;
        Ok(Self { use_storage_id, use_trunk_file, storages })
    }
}

/// 98 answer: use_trunk_file, an i32 count, then the 59-byte records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStats {
    pub use_trunk_file: bool,
    pub groups: Vec<VolumeStat>,
}

impl VolumeStats {
    pub fn encode(&self) -> BytesMut {
        let p = Profile::default();
        let mut b = BytesMut::with_capacity(5 + self.groups.len() * VolumeStat::wire_len(p));
        b.put_u8(self.use_trunk_file as u8);
        b.put_i32(self.groups.len() as i32);
        for g in &self.groups {
            g.put(&mut b, p);
        }
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let p = Profile::default();
        let mut r = Reader::new(body);
        let (use_trunk_file, count) = (r.u8()? != 0, r.i32()?);
        let rest = &body[5..];
        if count < 0 || rest.len() != count as usize * VolumeStat::wire_len(p) {
            return Err(DecodeError::BadLength { len: body.len(), why: "5 + count × 59" });
        }
        Ok(Self { use_trunk_file, groups: decode_records(rest, VolumeStat::wire_len(p), |r| VolumeStat::read(r, p))? })
    }
}

/// Decodes `n` records of a fixed-size type after a head of `head` bytes.
pub fn decode_records<T>(
    body: &[u8],
    record_len: usize,
    read: impl Fn(&mut Reader<'_>) -> DecodeResult<T>,
) -> DecodeResult<Vec<T>> {
    if record_len == 0 || !body.len().is_multiple_of(record_len) {
        return Err(DecodeError::BadLength { len: body.len(), why: "not a whole number of records" });
    }
    let mut r = Reader::new(body);
    let mut out = Vec::with_capacity(body.len() / record_len);
    while r.remaining() > 0 {
        out.push(read(&mut r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::test_util::hex(s)
    }

    #[test]
    fn store_target_golden_classic() {
        // group1, 127.0.0.2:23000, path 0 — 40 bytes as in capture `upload_file_4k`.
        let want = hex("67726f75703100000000000000000000 3132372e302e302e32000000000000 00000000000059d8 00");
        let t = StoreTarget { group: "group1".into(), ip: "127.0.0.2".into(), port: 23000, store_path_index: 0 };
        assert_eq!(&t.encode(Profile::CLASSIC)[..], &want[..]);
        assert_eq!(StoreTarget::decode_any(&want).unwrap(), t);
        assert_eq!(StoreTarget::wire_len(Profile::V6_16_IPV6), 70);
    }

    #[test]
    fn fifteen_char_ip_has_no_nul() {
        let t = FetchTarget { group: "g".into(), ip: "255.255.255.255".into(), port: 1 };
        let b = t.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 39);
        assert_eq!(&b[16..31], b"255.255.255.255");
        assert_eq!(FetchTarget::decode_any(&b).unwrap(), t);
    }

    #[test]
    fn file_req_bounds() {
        let r = FileReq { group: "group1".into(), filename: "M00/00/00/abc".into() };
        let b = r.encode();
        assert_eq!(&b[..16], b"group1\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(FileReq::decode(&b).unwrap(), r);
        assert!(FileReq::decode(&b[..16]).is_err());
        assert!(FileReq::decode(&[b'a'; 16 + 128]).is_err());
    }

    #[test]
    fn store_targets_two_servers() {
        let t = StoreTargets {
            group: "group1".into(),
            servers: vec![
                ServerAddr { ip: "127.0.0.2".into(), port: 23000 },
                ServerAddr { ip: "127.0.0.3".into(), port: 23000 },
            ],
            store_path_index: 0,
        };
        let b = t.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 63);
        assert_eq!(StoreTargets::decode_any(&b).unwrap(), t);
        assert!(StoreTargets::decode(&b[..62], Profile::CLASSIC).is_err());
        assert!(StoreTargets::decode(&b[..17], Profile::CLASSIC).is_err());
    }

    #[test]
    fn fetch_all_layouts_differ_for_two_servers() {
        let t = FetchTargets {
            group: "group1".into(),
            servers: vec![
                ServerAddr { ip: "127.0.0.2".into(), port: 23000 },
                ServerAddr { ip: "127.0.0.3".into(), port: 23000 },
            ],
        };
        let classic = t.encode(Profile::CLASSIC);
        let v616 = t.encode(Profile::V6_16);
        assert_eq!(classic.len(), 16 + 23 + 15);
        assert_eq!(v616.len(), 16 + 2 * 23);
        assert_eq!(FetchTargets::decode(&classic, Profile::CLASSIC).unwrap(), t);
        assert_eq!(FetchTargets::decode(&v616, Profile::V6_16).unwrap(), t);
        assert!(FetchTargets::decode(&v616[..50], Profile::V6_16).is_err());
    }

    #[test]
    fn group_storage_req() {
        let b = GroupStorageReq { group: "group1".into(), storage_id: Some("127.0.0.2".into()) }.encode();
        assert_eq!(b.len(), 25);
        let d = GroupStorageReq::decode(&b).unwrap();
        assert_eq!(d.storage_id.as_deref(), Some("127.0.0.2"));
        assert!(GroupStorageReq::decode(&[0u8; 32]).is_err());
        assert!(GroupStorageReq::decode_with_id(&[0u8; 16]).is_err());
    }

    #[test]
    fn trunk_server_id_has_nul() {
        let b = encode_trunk_server_id("100001");
        assert_eq!(&b[..], b"100001\0");
        assert_eq!(decode_trunk_server_id(&b).unwrap(), "100001");
        assert!(decode_trunk_server_id(b"100001").is_err());
    }

    #[test]
    fn cluster_stat_record_sizes() {
        assert_eq!(TrackerClusterStat::wire_len(Profile::V6_16), 90);
        assert_eq!(StorageClusterStat::wire_len(Profile::V6_16), 106);
        assert_eq!(VolumeStat::wire_len(Profile::V6_16), 59);
        let rec = VolumeStat { group: "group1".into(), total_mb: 5, ..Default::default() };
        let b = rec.encode(Profile::V6_16);
        assert_eq!(&b[17..25], &5i64.to_be_bytes());
        let v = decode_records(&b, 59, |r| VolumeStat::read(r, Profile::V6_16)).unwrap();
        assert_eq!(v, vec![rec]);
        assert!(decode_records(&b[..58], 59, |r| VolumeStat::read(r, Profile::V6_16)).is_err());
    }
}
