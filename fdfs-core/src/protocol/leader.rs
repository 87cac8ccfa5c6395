//! Tracker ↔ tracker messages (PROTOCOL.md §3.7): status for elections, leader notification,
//! pings, and the state-file copy used to bootstrap a new tracker.

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeError, DecodeResult, Reader};
use super::wire::{wire_struct, Text, I32, I64, U8};
use super::{Layout, Profile};

wire_struct! {
    /// 64 TRACKER_GET_STATUS answer (17 bytes).
    pub struct TrackerStatus {
        is_leader: U8,
        running_time: I64,
        restart_interval: I64,
    }
}

/// 66 NOTIFY_NEXT_LEADER / 67 COMMIT_NEXT_LEADER: the candidate as `ip:port`. Senders up to
/// 6.13 write a zero-padded `IP_ADDRESS_SIZE + 6` field, 6.15+ the bare text; all are accepted.
pub fn encode_leader_addr(addr: &str, p: Profile) -> BytesMut {
    let mut b = BytesMut::with_capacity(52);
    if p.layout >= Layout::V615 {
        b.put_slice(addr.as_bytes());
    } else {
        put_fixed(&mut b, addr, p.ip_addr_size() + 6);
    }
    b
}

pub fn decode_leader_addr(body: &[u8]) -> DecodeResult<String> {
    if body.is_empty() || body.len() > 52 {
        return Err(DecodeError::BadLength { len: body.len(), why: "1..52-byte ip:port" });
    }
    let addr = Reader::new(body).fixed_str(body.len())?;
    if !addr.contains(':') {
        return Err(DecodeError::Invalid("leader address without port"));
    }
    Ok(addr)
}

wire_struct! {
    /// 65 PING_LEADER request body in 6.15.5+ (classic sends an empty body).
    pub struct PingLeaderReq {
        conn_alloc: I32,
        conn_current: I32,
        conn_max: I32,
    }
}

wire_struct! {
    /// One entry of the 65 answer: the trunk server of a group.
    pub struct GroupTrunkServer {
        group: Text<16>,
        trunk_server_id: Text<16>,
    }
}

wire_struct! {
    /// 58 JOIN_LEADER request (6.15.5+).
    pub struct JoinLeaderReq {
        up_time: I64,
        version: Text<8>,
        server_port: I64,
    }
}

/// Index of the state files copied by 63 GET_ONE_SYS_FILE.
pub const SYS_FILES: [&str; 4] =
    ["storage_groups_new.dat", "storage_servers_new.dat", "storage_sync_timestamp.dat", "storage_changelog.dat"];

wire_struct! {
    /// 63 GET_ONE_SYS_FILE request.
    pub struct SysFileReq {
        index: U8,
        offset: I64,
    }
}

impl SysFileReq {
    pub fn file_name(&self) -> DecodeResult<&'static str> {
        SYS_FILES
            .get(self.index as usize)
            .copied()
            .ok_or(DecodeError::OutOfRange { field: "sys file index", value: self.index.into() })
    }
}

/// 63 answer: the whole file's size, then a chunk from the requested offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysFileChunk {
    pub file_size: i64,
    pub content: Vec<u8>,
}

impl SysFileChunk {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(8 + self.content.len());
        b.put_i64(self.file_size);
        b.put_slice(&self.content);
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let file_size = r.i64()?;
        if file_size < 0 || (file_size as u64) < r.remaining() as u64 {
            return Err(DecodeError::OutOfRange { field: "file_size", value: file_size });
        }
        Ok(Self { file_size, content: r.rest().to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_status_is_17_bytes() {
        let s = TrackerStatus { is_leader: 1, running_time: 600, restart_interval: 0 };
        let b = s.encode(Profile::CLASSIC);
        assert_eq!(&b[..], &[1, 0, 0, 0, 0, 0, 0, 2, 0x58, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(TrackerStatus::decode(&b, Profile::CLASSIC).unwrap(), s);
    }

    #[test]
    fn leader_addr_both_layouts() {
        let c = encode_leader_addr("127.0.0.1:22122", Profile::CLASSIC);
        assert_eq!(c.len(), 22);
        assert_eq!(decode_leader_addr(&c).unwrap(), "127.0.0.1:22122");
        let v = encode_leader_addr("127.0.0.1:22122", Profile::V6_16);
        assert_eq!(&v[..], b"127.0.0.1:22122");
        assert_eq!(decode_leader_addr(&v).unwrap(), "127.0.0.1:22122");
        assert!(decode_leader_addr(b"").is_err());
        assert!(decode_leader_addr(b"nohost").is_err());
    }

    #[test]
    fn sys_file_messages() {
        let r = SysFileReq { index: 3, offset: 10 };
        let b = r.encode(Profile::CLASSIC);
        assert_eq!(&b[..], &[3, 0, 0, 0, 0, 0, 0, 0, 10]);
        assert_eq!(r.file_name().unwrap(), "storage_changelog.dat");
        assert!(SysFileReq { index: 4, offset: 0 }.file_name().is_err());
        let c = SysFileChunk { file_size: 5, content: b"abc".to_vec() };
        assert_eq!(SysFileChunk::decode(&c.encode()).unwrap(), c);
        assert!(SysFileChunk::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 2]).is_err());
        assert_eq!(JoinLeaderReq::wire_len(Profile::V6_16), 24);
        assert_eq!(PingLeaderReq::wire_len(Profile::V6_16), 12);
        assert_eq!(GroupTrunkServer::wire_len(Profile::V6_16), 32);
    }
}
