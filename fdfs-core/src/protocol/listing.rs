//! 120 LIST_FILES, fastdfs-rs's own command (C FastDFS has no way to enumerate a group's files;
//! a C storage answers it EINVAL and closes). A client asks one storage for the live files of
//! its group, read from that storage's binlog, with filters the storage applies.
//!
//! Request body: group (16, zero-padded), flags (8: [`list_flags`]), created at or after (8),
//! created before (8; 0 = no bound), smallest size (8), largest size (8; 0 = no bound),
//! extension (6, zero-padded, no dot; empty = any), then the name prefix (the rest, at most
//! [`MAX_PREFIX`] bytes, e.g. `M00/00/`). Integers big-endian as everywhere in FastDFS.
//!
//! Answer: a sequence of ordinary answer packets (10-byte header, cmd 100). Each OK packet with
//! a body carries whole records; an OK packet with an empty body ends the list; a packet with a
//! non-zero status ends it with that error. A record is: name length (1), the remote filename,
//! size (8), create time (8, from the name), CRC32 (8), metadata length (8), metadata (FastDFS's
//! packed form, `name 0x02 value` joined by `0x01`).

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeError, DecodeResult, Reader};
use super::storage::{valid_ext, EXT_LEN};
use super::{GROUP_LEN, MAX_FILENAME_LEN};

/// The longest name prefix a request may filter on.
pub const MAX_PREFIX: usize = 64;
/// A storage puts at most this many bytes of records in one packet.
pub const MAX_CHUNK: usize = 64 << 10;
/// Metadata bytes sent per file at most (C's metadata files are small; a bigger one is cut).
pub const MAX_METADATA: usize = 16 << 10;

/// Bits of the request's flags field.
pub mod list_flags {
    /// Compute the CRC32 of appender and slave files (their names do not carry it): reads
    /// every such file whole.
    pub const CRC32: u64 = 1;
    /// Send each file's metadata.
    pub const METADATA: u64 = 2;
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilesReq {
    pub group: String,
    pub flags: u64,
    /// Create time (unix seconds, from the name) at or after this.
    pub created_after: i64,
    /// Create time before this; 0: no bound.
    pub created_before: i64,
    pub min_size: u64,
    /// 0: no bound.
    pub max_size: u64,
    /// The extension without its dot; empty: any.
    pub ext: String,
    /// The remote filename starts with this (`M00/`, `M00/0A/`).
    pub prefix: String,
}

const FIXED_LEN: usize = GROUP_LEN + 8 * 5 + EXT_LEN;

impl ListFilesReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(FIXED_LEN + self.prefix.len());
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_u64(self.flags);
        b.put_i64(self.created_after);
        b.put_i64(self.created_before);
        b.put_u64(self.min_size);
        b.put_u64(self.max_size);
        put_fixed(&mut b, &self.ext, EXT_LEN);
        b.put_slice(self.prefix.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() < FIXED_LEN || body.len() > FIXED_LEN + MAX_PREFIX {
            return Err(DecodeError::BadLength { len: body.len(), why: "62 bytes and a prefix of at most 64" });
        }
        let mut r = Reader::new(body);
        let group = r.fixed_str(GROUP_LEN)?;
        let flags = r.i64()? as u64;
        let created_after = r.i64()?;
        let created_before = r.i64()?;
        let min_size = r.i64()? as u64;
        let max_size = r.i64()? as u64;
        let ext = r.fixed_str(EXT_LEN)?;
        let prefix = r.rest_str()?;
        if !valid_ext(&ext) || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DecodeError::Invalid("extension or prefix"));
        }
        Ok(Self { group, flags, created_after, created_before, min_size, max_size, ext, prefix })
    }

    /// Whether a name's create time and text pass the filters (checked before the disk is).
    pub fn name_matches(&self, filename: &str, created: i64) -> bool {
        created >= self.created_after
            && (self.created_before == 0 || created < self.created_before)
            && filename.starts_with(&self.prefix)
            && (self.ext.is_empty() || extension(filename) == Some(self.ext.as_str()))
    }

    pub fn size_matches(&self, size: u64) -> bool {
        size >= self.min_size && (self.max_size == 0 || size <= self.max_size)
    }
}

/// The extension of a remote filename's last part (after its last dot), if it has one.
pub fn extension(filename: &str) -> Option<&str> {
    let last = filename.rsplit('/').next()?;
    last.rsplit_once('.').map(|(_, e)| e)
}

/// One live file of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedFile {
    pub filename: String,
    pub size: u64,
    pub created: i64,
    pub crc32: u32,
    /// Packed as FastDFS stores it; empty when not asked for or none.
    pub metadata: Vec<u8>,
}

impl ListedFile {
    pub fn put(&self, b: &mut impl BufMut) {
        b.put_u8(self.filename.len() as u8);
        b.put_slice(self.filename.as_bytes());
        b.put_u64(self.size);
        b.put_i64(self.created);
        b.put_u64(u64::from(self.crc32));
        b.put_u64(self.metadata.len() as u64);
        b.put_slice(&self.metadata);
    }

    /// Every record of one packet's body.
    pub fn decode_all(body: &[u8]) -> DecodeResult<Vec<Self>> {
        let mut r = Reader::new(body);
        let mut out = Vec::new();
        while r.remaining() > 0 {
            let len = r.u8()? as usize;
            if len == 0 || len >= MAX_FILENAME_LEN {
                return Err(DecodeError::OutOfRange { field: "filename length", value: len as i64 });
            }
            let filename = r.str(len)?;
            let size = r.i64()? as u64;
            let created = r.i64()?;
            let crc32 = r.i64()? as u32;
            let meta_len = r.len_field("metadata length", MAX_METADATA as u64)? as usize;
            let metadata = r.bytes(meta_len)?.to_vec();
            out.push(Self { filename, size, created, crc32, metadata });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_bounds() {
        let req = ListFilesReq {
            group: "group1".into(),
            flags: list_flags::METADATA,
            created_after: 10,
            created_before: 20,
            min_size: 1,
            max_size: 4096,
            ext: "jpg".into(),
            prefix: "M00/0A/".into(),
        };
        let b = req.encode();
        assert_eq!(b.len(), FIXED_LEN + 7);
        assert_eq!(ListFilesReq::decode(&b).unwrap(), req);
        assert!(ListFilesReq::decode(&b[..FIXED_LEN - 1]).is_err());
        let long = ListFilesReq { prefix: "x".repeat(MAX_PREFIX + 1), ..req.clone() };
        assert!(ListFilesReq::decode(&long.encode()).is_err());
        let spaced = ListFilesReq { prefix: "M00/ a".into(), ..req.clone() };
        assert!(ListFilesReq::decode(&spaced.encode()).is_err(), "a prefix is name text");
        let bad_ext = ListFilesReq { ext: "j/g".into(), ..req };
        assert!(ListFilesReq::decode(&bad_ext.encode()).is_err());
    }

    #[test]
    fn filters() {
        let req = ListFilesReq { created_after: 10, created_before: 20, ext: "jpg".into(), ..Default::default() };
        assert!(req.name_matches("M00/00/00/abc.jpg", 10));
        assert!(!req.name_matches("M00/00/00/abc.jpg", 20), "before is exclusive");
        assert!(!req.name_matches("M00/00/00/abc.jpg", 9));
        assert!(!req.name_matches("M00/00/00/abc.png", 15));
        assert!(!req.name_matches("M00/00/00/abc", 15));
        let any = ListFilesReq { prefix: "M01/".into(), max_size: 10, min_size: 2, ..Default::default() };
        assert!(any.name_matches("M01/00/00/abc", 0));
        assert!(!any.name_matches("M00/00/00/abc", 0));
        assert!(any.size_matches(2) && any.size_matches(10));
        assert!(!any.size_matches(1) && !any.size_matches(11));
        assert!(ListFilesReq::default().size_matches(u64::MAX));
    }

    #[test]
    fn records_round_trip() {
        let files = vec![
            ListedFile {
                filename: "M00/00/00/a.jpg".into(),
                size: 5,
                created: 7,
                crc32: 0xFFFF_FFFF,
                metadata: vec![],
            },
            ListedFile { filename: "M00/00/01/b".into(), size: 0, created: 1, crc32: 3, metadata: b"k\x02v".to_vec() },
        ];
        let mut b = BytesMut::new();
        files.iter().for_each(|f| f.put(&mut b));
        assert_eq!(ListedFile::decode_all(&b).unwrap(), files);
        assert!(ListedFile::decode_all(&b[..b.len() - 1]).is_err());
        assert!(ListedFile::decode_all(&[0]).is_err());
    }
}
