//! Statistics records: the 348-byte `StatBuff`, the group stat record (LIST_GROUPS) and the
//! storage stat record (LIST_STORAGE), PROTOCOL.md §3.4.

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeError, DecodeResult, Reader};
use super::Profile;

macro_rules! counters {
    ($($name:ident,)*) => {
        /// The 42 i64 counters and timestamps of `StatBuff`, in wire order. Their names are
        /// also the keys of `storage_stat.dat` and `storage_servers_new.dat`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct Counters {
            $(pub $name: i64,)*
        }

        impl Counters {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name),)*];

            pub fn values(&self) -> [i64; Self::NAMES.len()] {
                [$(self.$name,)*]
            }

            /// Sets a counter by its file key; unknown keys are ignored.
            pub fn set(&mut self, name: &str, v: i64) -> bool {
                match name {
                    $(stringify!($name) => { self.$name = v; true })*
                    _ => false,
                }
            }

            fn read(r: &mut Reader<'_>) -> DecodeResult<Self> {
                Ok(Self { $($name: r.i64()?,)* })
            }

            fn put(&self, buf: &mut BytesMut) {
                $(buf.put_i64(self.$name);)*
            }
        }
    };
}

/// Calls `$m! { name, ... }` with the 42 counter names of `StatBuff`, in wire order: the one
/// list every counter type is generated from.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_stat_counter {
    ($m:ident) => {
        $m! {
            total_upload_count, success_upload_count,
            total_append_count, success_append_count,
            total_modify_count, success_modify_count,
            total_truncate_count, success_truncate_count,
            total_set_meta_count, success_set_meta_count,
            total_delete_count, success_delete_count,
            total_download_count, success_download_count,
            total_get_meta_count, success_get_meta_count,
            total_create_link_count, success_create_link_count,
            total_delete_link_count, success_delete_link_count,
            total_upload_bytes, success_upload_bytes,
            total_append_bytes, success_append_bytes,
            total_modify_bytes, success_modify_bytes,
            total_download_bytes, success_download_bytes,
            total_sync_in_bytes, success_sync_in_bytes,
            total_sync_out_bytes, success_sync_out_bytes,
            total_file_open_count, success_file_open_count,
            total_file_read_count, success_file_read_count,
            total_file_write_count, success_file_write_count,
            last_source_update, last_sync_update, last_synced_timestamp, last_heart_beat_time,
        }
    };
}

for_each_stat_counter!(counters);

/// `StatBuff`: connection counts (i32 ×3) then the counters. Sent in BEAT and embedded in the
/// storage stat record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatBuff {
    pub conn_alloc: i32,
    pub conn_current: i32,
    pub conn_max: i32,
    pub counters: Counters,
}

impl StatBuff {
    pub const LEN: usize = 12 + 8 * Counters::NAMES.len();

    pub fn read(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Self { conn_alloc: r.i32()?, conn_current: r.i32()?, conn_max: r.i32()?, counters: Counters::read(r)? })
    }

    pub fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(self.conn_alloc);
        buf.put_i32(self.conn_current);
        buf.put_i32(self.conn_max);
        self.counters.put(buf);
    }
}

/// One group in the LIST_GROUPS answer. Classic records have the HTTP port and one active
/// count; 6.13.1+ records have `reserved_mb` and separate readable/writable counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStat {
    pub group: String,
    pub total_mb: i64,
    pub free_mb: i64,
    pub reserved_mb: i64,
    pub trunk_free_mb: i64,
    pub storage_count: i64,
    pub storage_port: i64,
    pub storage_http_port: i64,
    pub active_count: i64,
    pub readable_count: i64,
    pub writable_count: i64,
    pub current_write_server: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_trunk_file_id: i64,
}

impl GroupStat {
    /// 105 bytes up to 6.12, 113 from 6.13.1.
    pub const fn wire_len(p: Profile) -> usize {
        if p.layout.has_http_fields() {
            105
        } else {
            113
        }
    }

    pub fn put(&self, buf: &mut BytesMut, p: Profile) {
        put_fixed(buf, &self.group, 17);
        buf.put_i64(self.total_mb);
        buf.put_i64(self.free_mb);
        if p.layout.has_http_fields() {
            buf.put_i64(self.trunk_free_mb);
            buf.put_i64(self.storage_count);
            buf.put_i64(self.storage_port);
            buf.put_i64(self.storage_http_port);
            buf.put_i64(self.active_count);
        } else {
            buf.put_i64(self.reserved_mb);
            buf.put_i64(self.trunk_free_mb);
            buf.put_i64(self.storage_count);
            buf.put_i64(self.storage_port);
            buf.put_i64(self.readable_count);
            buf.put_i64(self.writable_count);
        }
        buf.put_i64(self.current_write_server);
        buf.put_i64(self.store_path_count);
        buf.put_i64(self.subdir_count_per_path);
        buf.put_i64(self.current_trunk_file_id);
    }

    pub fn read(r: &mut Reader<'_>, p: Profile) -> DecodeResult<Self> {
        let mut g = GroupStat { group: r.fixed_str(17)?, ..Default::default() };
        g.total_mb = r.i64()?;
        g.free_mb = r.i64()?;
        if p.layout.has_http_fields() {
            g.trunk_free_mb = r.i64()?;
            g.storage_count = r.i64()?;
            g.storage_port = r.i64()?;
            g.storage_http_port = r.i64()?;
            g.active_count = r.i64()?;
            g.readable_count = g.active_count;
            g.writable_count = g.active_count;
        } else {
            g.reserved_mb = r.i64()?;
            g.trunk_free_mb = r.i64()?;
            g.storage_count = r.i64()?;
            g.storage_port = r.i64()?;
            g.readable_count = r.i64()?;
            g.writable_count = r.i64()?;
            g.active_count = g.readable_count.max(g.writable_count);
        }
        g.current_write_server = r.i64()?;
        g.store_path_count = r.i64()?;
        g.subdir_count_per_path = r.i64()?;
        g.current_trunk_file_id = r.i64()?;
        Ok(g)
    }

    pub fn encode_list(list: &[GroupStat], p: Profile) -> BytesMut {
        let mut b = BytesMut::with_capacity(list.len() * Self::wire_len(p));
        for g in list {
            g.put(&mut b, p);
        }
        b
    }

    pub fn decode_list(body: &[u8], p: Profile) -> DecodeResult<Vec<Self>> {
        super::tracker::decode_records(body, Self::wire_len(p), |r| Self::read(r, p))
    }

    /// Client side: the record size tells the layout (105 classic, 113 for 6.13.1+). A body
    /// that both divide (multiples of 11865) is read as 6.16.
    pub fn decode_list_any(body: &[u8]) -> DecodeResult<(Vec<Self>, Profile)> {
        for p in [Profile::V6_16, Profile::CLASSIC] {
            if body.len().is_multiple_of(Self::wire_len(p)) {
                return Ok((Self::decode_list(body, p)?, p));
            }
        }
        Err(DecodeError::BadLength { len: body.len(), why: "not 105- or 113-byte group records" })
    }
}

/// One storage in the LIST_STORAGE answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStat {
    pub status: super::StorageStatus,
    /// 6.13+: 0 none, 2 write-only, 4 read-only, 6 both.
    pub rw_mode: u8,
    pub id: String,
    pub ip: String,
    /// Classic only (`http.domain_name`).
    pub domain_name: String,
    pub sync_src_id: String,
    pub version: String,
    pub join_time: i64,
    pub up_time: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    /// 6.13.1+ only.
    pub reserved_mb: i64,
    pub upload_priority: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_write_path: i64,
    pub storage_port: i64,
    /// Classic only.
    pub storage_http_port: i64,
    pub stat: StatBuff,
    pub if_trunk_server: bool,
}

impl StorageStat {
    /// 612 (classic), 487 (6.16 with 16-byte IPs) or 517 (6.16 with 46-byte IPs).
    pub const fn wire_len(p: Profile) -> usize {
        if p.layout.has_http_fields() {
            1 + 16 + p.ip_addr_size() + 128 + 16 + p.version_size() + 8 * 10 + StatBuff::LEN + 1
        } else {
            1 + 1 + 16 + p.response_ip_size + 16 + 8 + 8 * 10 + StatBuff::LEN + 1
        }
    }

    pub fn put(&self, buf: &mut BytesMut, p: Profile) {
        buf.put_u8(self.status.byte());
        if p.layout.has_http_fields() {
            put_fixed(buf, &self.id, 16);
            put_fixed(buf, &self.ip, p.ip_addr_size());
            put_fixed(buf, &self.domain_name, 128);
            put_fixed(buf, &self.sync_src_id, 16);
            put_fixed(buf, &self.version, p.version_size());
        } else {
            buf.put_u8(self.rw_mode);
            put_fixed(buf, &self.id, 16);
            put_fixed(buf, &self.ip, p.response_ip_size);
            put_fixed(buf, &self.sync_src_id, 16);
            put_fixed(buf, &self.version, 8);
        }
        buf.put_i64(self.join_time);
        buf.put_i64(self.up_time);
        buf.put_i64(self.total_mb);
        buf.put_i64(self.free_mb);
        if !p.layout.has_http_fields() {
            buf.put_i64(self.reserved_mb);
        }
        buf.put_i64(self.upload_priority);
        buf.put_i64(self.store_path_count);
        buf.put_i64(self.subdir_count_per_path);
        buf.put_i64(self.current_write_path);
        buf.put_i64(self.storage_port);
        if p.layout.has_http_fields() {
            buf.put_i64(self.storage_http_port);
        }
        self.stat.put(buf);
        buf.put_u8(self.if_trunk_server as u8);
    }

    pub fn read(r: &mut Reader<'_>, p: Profile) -> DecodeResult<Self> {
        let mut s = StorageStat { status: super::StorageStatus::from_byte(r.u8()?), ..Default::default() };
        if p.layout.has_http_fields() {
            s.rw_mode = 6;
            s.id = r.fixed_str(16)?;
            s.ip = r.fixed_str(p.ip_addr_size())?;
            s.domain_name = r.fixed_str(128)?;
            s.sync_src_id = r.fixed_str(16)?;
            s.version = r.fixed_str(p.version_size())?;
        } else {
            s.rw_mode = r.u8()?;
            s.id = r.fixed_str(16)?;
            s.ip = r.fixed_str(p.response_ip_size)?;
            s.sync_src_id = r.fixed_str(16)?;
            s.version = r.fixed_str(8)?;
        }
        s.join_time = r.i64()?;
        s.up_time = r.i64()?;
        s.total_mb = r.i64()?;
        s.free_mb = r.i64()?;
        if !p.layout.has_http_fields() {
            s.reserved_mb = r.i64()?;
        }
        s.upload_priority = r.i64()?;
        s.store_path_count = r.i64()?;
        s.subdir_count_per_path = r.i64()?;
        s.current_write_path = r.i64()?;
        s.storage_port = r.i64()?;
        if p.layout.has_http_fields() {
            s.storage_http_port = r.i64()?;
        }
        s.stat = StatBuff::read(r)?;
        s.if_trunk_server = r.u8()? != 0;
        Ok(s)
    }

    pub fn encode_list(list: &[StorageStat], p: Profile) -> BytesMut {
        let mut b = BytesMut::with_capacity(list.len() * Self::wire_len(p));
        for s in list {
            s.put(&mut b, p);
        }
        b
    }

    pub fn decode_list(body: &[u8], p: Profile) -> DecodeResult<Vec<Self>> {
        super::tracker::decode_records(body, Self::wire_len(p), |r| Self::read(r, p))
    }

    /// Client side: tries 517 (6.13+, or 6.15+ with IPv6 width, as Java 1.39 does), 487, then
    /// 612 (classic), 642 (6.11) and 644 (6.12).
    pub fn decode_list_any(body: &[u8]) -> DecodeResult<(Vec<Self>, Profile)> {
        use super::Layout;
        let candidates = [
            Profile::V6_16_IPV6,
            Profile::V6_16,
            Profile::CLASSIC,
            Profile::of(Layout::V611, false),
            Profile::of(Layout::V612, false),
        ];
        for p in candidates {
            if body.len().is_multiple_of(Self::wire_len(p)) {
                return Ok((Self::decode_list(body, p)?, p));
            }
        }
        Err(DecodeError::BadLength { len: body.len(), why: "no storage record size divides it" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(StatBuff::LEN, 348);
        assert_eq!(StorageStat::wire_len(Profile::CLASSIC), 612);
        assert_eq!(StorageStat::wire_len(Profile::V6_16), 487);
        assert_eq!(StorageStat::wire_len(Profile::V6_16_IPV6), 517);
        assert_eq!(GroupStat::wire_len(Profile::CLASSIC), 105);
        assert_eq!(GroupStat::wire_len(Profile::V6_16), 113);
    }

    #[test]
    fn group_stat_classic_offsets() {
        let g = GroupStat {
            group: "group1".into(),
            total_mb: 1,
            free_mb: 2,
            trunk_free_mb: 3,
            storage_count: 4,
            storage_port: 23000,
            storage_http_port: 8888,
            active_count: 5,
            readable_count: 5,
            writable_count: 5,
            current_write_server: 6,
            store_path_count: 7,
            subdir_count_per_path: 256,
            current_trunk_file_id: 9,
            reserved_mb: 0,
        };
        let b = GroupStat::encode_list(std::slice::from_ref(&g), Profile::CLASSIC);
        assert_eq!(b.len(), 105);
        assert_eq!(&b[..7], b"group1\0");
        assert_eq!(&b[49..57], &23000i64.to_be_bytes());
        assert_eq!(&b[57..65], &8888i64.to_be_bytes());
        assert_eq!(&b[97..105], &9i64.to_be_bytes());
        let (back, p) = GroupStat::decode_list_any(&b).unwrap();
        assert_eq!(p, Profile::CLASSIC);
        assert_eq!(back, vec![g]);
    }

    #[test]
    fn storage_stat_round_trip_every_layout() {
        let mut s = StorageStat {
            status: crate::protocol::StorageStatus::Active,
            rw_mode: 6,
            id: "127.0.0.2".into(),
            ip: "127.0.0.2".into(),
            sync_src_id: "".into(),
            version: "6.08".into(),
            storage_port: 23000,
            ..Default::default()
        };
        s.stat.counters.total_upload_count = 42;
        s.stat.counters.last_heart_beat_time = 1_700_000_000;
        for p in [Profile::CLASSIC, Profile::V6_16, Profile::V6_16_IPV6] {
            let b = StorageStat::encode_list(&[s.clone(), s.clone()], p);
            assert_eq!(b.len(), 2 * StorageStat::wire_len(p));
            let back = StorageStat::decode_list(&b, p).unwrap();
            assert_eq!(back[1].stat.counters.total_upload_count, 42);
            assert_eq!(back[0].ip, "127.0.0.2");
        }
        assert!(StorageStat::decode_list(&[0u8; 611], Profile::CLASSIC).is_err());
    }
}
