//! Storage → storage replication messages (PROTOCOL.md §4.14).

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeError, DecodeResult, Reader};
use super::storage::{check_content, name_len, StreamedHead};
use super::wire::{wire_struct, Text, I32, U8};
use super::{GROUP_LEN, MAX_FILENAME_LEN};

wire_struct! {
    /// 9 REPORT_SERVER_ID: the sender's storage ID.
    pub struct ReportServerId {
        id: Text<16>,
    }
}

/// 16 SYNC_CREATE_FILE / 18 SYNC_UPDATE_FILE. With header status 17 (EEXIST) no content
/// follows even though `file_size` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncFileHead {
    pub file_size: u64,
    pub timestamp: i32,
    pub group: String,
    pub filename: String,
    /// True when the header's status byte said "no content follows".
    pub content_omitted: bool,
}

impl SyncFileHead {
    /// Decodes with knowledge of the header status byte.
    pub fn decode_with_status(head: &[u8], body_len: u64, status: u8) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let len = name_len(&mut r, 1)?;
        let file_size = r.len_field("file_size", i64::MAX as u64)?;
        let timestamp = r.i32()?;
        let group = r.fixed_str(GROUP_LEN)?;
        let filename = r.str(len)?;
        r.finish()?;
        let omitted = status == super::Status::EEXIST.0;
        let content = if omitted { 0 } else { file_size };
        check_content("file_size", content, head.len(), body_len)?;
        Ok(Self { file_size, timestamp, group, filename, content_omitted: omitted })
    }
}

impl StreamedHead for SyncFileHead {
    const FIXED_LEN: usize = 8 + 8 + 4 + GROUP_LEN;

    fn head_len(fixed: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN + name_len(&mut Reader::new(fixed), 1)?)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        Self::decode_with_status(head, body_len, 0)
    }

    fn content_len(&self) -> u64 {
        if self.content_omitted {
            0
        } else {
            self.file_size
        }
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.file_size as i64);
        b.put_i32(self.timestamp);
        put_fixed(b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
    }
}

/// 25 SYNC_APPEND_FILE / 35 SYNC_MODIFY_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncRangeHead {
    pub offset: u64,
    pub size: u64,
    pub timestamp: i32,
    pub group: String,
    pub filename: String,
}

impl StreamedHead for SyncRangeHead {
    const FIXED_LEN: usize = 8 + 8 + 8 + 4 + GROUP_LEN;

    fn head_len(fixed: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN + name_len(&mut Reader::new(fixed), 1)?)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let len = name_len(&mut r, 1)?;
        let offset = r.len_field("offset", i64::MAX as u64)?;
        let size = r.len_field("size", i64::MAX as u64)?;
        let timestamp = r.i32()?;
        let group = r.fixed_str(GROUP_LEN)?;
        let filename = r.str(len)?;
        r.finish()?;
        check_content("size", size, head.len(), body_len)?;
        Ok(Self { offset, size, timestamp, group, filename })
    }

    fn content_len(&self) -> u64 {
        self.size
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.offset as i64);
        b.put_i64(self.size as i64);
        b.put_i32(self.timestamp);
        put_fixed(b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
    }
}

/// 37 SYNC_TRUNCATE_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncTruncateReq {
    pub old_size: u64,
    pub new_size: u64,
    pub timestamp: i32,
    pub group: String,
    pub filename: String,
}

impl SyncTruncateReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(44 + self.filename.len());
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.old_size as i64);
        b.put_i64(self.new_size as i64);
        b.put_i32(self.timestamp);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let len = name_len(&mut r, 1)?;
        let v = Self {
            old_size: r.len_field("old size", i64::MAX as u64)?,
            new_size: r.len_field("new size", i64::MAX as u64)?,
            timestamp: r.i32()?,
            group: r.fixed_str(GROUP_LEN)?,
            filename: r.str(len)?,
        };
        r.finish()?;
        Ok(v)
    }
}

/// 17 SYNC_DELETE_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncDeleteReq {
    pub timestamp: i32,
    pub group: String,
    pub filename: String,
}

impl SyncDeleteReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(20 + self.filename.len());
        b.put_i32(self.timestamp);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() <= 20 || body.len() >= 20 + MAX_FILENAME_LEN {
            return Err(DecodeError::BadLength { len: body.len(), why: "4 + group[16] + filename" });
        }
        let mut r = Reader::new(body);
        Ok(Self { timestamp: r.i32()?, group: r.fixed_str(GROUP_LEN)?, filename: r.rest_str()? })
    }
}

/// 19 SYNC_CREATE_LINK (dest = link, src = target) and 40 SYNC_RENAME_FILE (dest = new name,
/// src = old name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncLinkReq {
    pub timestamp: i32,
    pub group: String,
    pub dest: String,
    pub src: String,
}

impl SyncLinkReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(36 + self.dest.len() + self.src.len());
        b.put_i64(self.dest.len() as i64);
        b.put_i64(self.src.len() as i64);
        b.put_i32(self.timestamp);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.dest.as_bytes());
        b.put_slice(self.src.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let dest_len = name_len(&mut r, 1)?;
        let src_len = name_len(&mut r, 1)?;
        let v =
            Self { timestamp: r.i32()?, group: r.fixed_str(GROUP_LEN)?, dest: r.str(dest_len)?, src: r.str(src_len)? };
        r.finish()?;
        Ok(v)
    }
}

wire_struct! {
    /// 26 FETCH_ONE_PATH_BINLOG request.
    pub struct FetchPathBinlogReq {
        group: Text<16>,
        store_path_index: U8,
    }
}

wire_struct! {
    /// `FDFSTrunkInfoBuff` (15 bytes): where a small file lives inside a trunk file.
    pub struct TrunkInfo {
        store_path_index: U8,
        sub_path_high: U8,
        sub_path_low: U8,
        trunk_file_id: I32,
        offset: I32,
        size: I32,
    }
}

wire_struct! {
    /// 27 TRUNK_ALLOC_SPACE request.
    pub struct TrunkAllocReq {
        group: Text<16>,
        file_size: I32,
        store_path_index: U8,
    }
}

wire_struct! {
    /// 28 TRUNK_ALLOC_CONFIRM / 29 TRUNK_FREE_SPACE request.
    pub struct TrunkSlotReq {
        group: Text<16>,
        info: TrunkInfoKind,
    }
}

#[derive(Debug)]
pub struct TrunkInfoKind;

impl super::wire::FieldKind for TrunkInfoKind {
    type Value = TrunkInfo;
    fn get(r: &mut Reader<'_>, p: super::Profile) -> DecodeResult<TrunkInfo> {
        TrunkInfo::read(r, p)
    }
    fn put(v: &TrunkInfo, buf: &mut BytesMut, p: super::Profile) {
        v.put(buf, p)
    }
    fn len(p: super::Profile) -> usize {
        TrunkInfo::wire_len(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Profile;

    const NAME: &str = "M00/00/00/fwAAAmkQj6SAWzvUAAAQANcpvSs953.txt";

    #[test]
    fn sync_file_head_with_and_without_content() {
        let h = SyncFileHead {
            file_size: 4096,
            timestamp: 1_700_000_000,
            group: "group1".into(),
            filename: NAME.into(),
            content_omitted: false,
        };
        let b = h.encode_head();
        assert_eq!(b.len(), 36 + 44);
        assert_eq!(SyncFileHead::head_len(&b[..36]).unwrap(), 80);
        assert_eq!(SyncFileHead::decode_head(&b, 80 + 4096).unwrap(), h);
        let omitted = SyncFileHead::decode_with_status(&b, 80, 17).unwrap();
        assert!(omitted.content_omitted);
        assert_eq!(omitted.content_len(), 0);
        assert!(SyncFileHead::decode_head(&b, 80).is_err());
    }

    #[test]
    fn sync_range_truncate_delete_link() {
        let r = SyncRangeHead { offset: 16, size: 16, timestamp: 5, group: "group1".into(), filename: NAME.into() };
        let b = r.encode_head();
        assert_eq!(&b[24..28], &[0, 0, 0, 5]);
        assert_eq!(SyncRangeHead::decode_head(&b, b.len() as u64 + 16).unwrap(), r);

        let t =
            SyncTruncateReq { old_size: 27, new_size: 13, timestamp: 5, group: "group1".into(), filename: NAME.into() };
        let b = t.encode();
        assert_eq!(b.len(), 44 + 44);
        assert_eq!(SyncTruncateReq::decode(&b).unwrap(), t);
        assert!(SyncTruncateReq::decode(&b[..87]).is_err());

        let d = SyncDeleteReq { timestamp: 5, group: "group1".into(), filename: NAME.into() };
        let b = d.encode();
        assert_eq!(&b[..4], &[0, 0, 0, 5]);
        assert_eq!(SyncDeleteReq::decode(&b).unwrap(), d);

        let l = SyncLinkReq { timestamp: 5, group: "group1".into(), dest: "a".into(), src: NAME.into() };
        let b = l.encode();
        assert_eq!(&b[..16], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 44]);
        assert_eq!(SyncLinkReq::decode(&b).unwrap(), l);
        assert!(SyncLinkReq::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn trunk_structures() {
        let info = TrunkInfo {
            store_path_index: 0,
            sub_path_high: 1,
            sub_path_low: 2,
            trunk_file_id: 1,
            offset: 1024,
            size: 4096,
        };
        let b = info.encode(Profile::CLASSIC);
        assert_eq!(&b[..], &[0, 1, 2, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0, 0x10, 0]);
        let req = TrunkSlotReq { group: "group1".into(), info };
        assert_eq!(TrunkSlotReq::decode(&req.encode(Profile::CLASSIC), Profile::CLASSIC).unwrap(), req);
        assert_eq!(TrunkAllocReq::wire_len(Profile::CLASSIC), 21);
        assert_eq!(FetchPathBinlogReq::wire_len(Profile::CLASSIC), 17);
        assert_eq!(ReportServerId::wire_len(Profile::CLASSIC), 16);
    }
}
