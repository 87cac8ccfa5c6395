//! Client → storage messages (PROTOCOL.md §4.2 to §4.13).
//!
//! Commands that carry file content (upload, append, modify, and the peer sync commands) are
//! decoded in two steps so that a server never buffers the content: [`StreamedHead`] reads the
//! fixed part plus filenames ("the head") and checks that the declared content length is what
//! remains of the packet; the caller then streams the content to disk.

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeError, DecodeResult, Reader};
use super::wire::{wire_struct, FullRespIp, I64};
use super::{GROUP_LEN, MAX_FILENAME_LEN};

pub const EXT_LEN: usize = 6;
pub const PREFIX_LEN: usize = 16;

/// A request whose body is a head followed by streamed content.
pub trait StreamedHead: Sized {
    /// Bytes that must be buffered before [`Self::head_len`] can be computed.
    const FIXED_LEN: usize;

    /// Total head length, from the first `FIXED_LEN` bytes (it depends on filename lengths).
    fn head_len(fixed: &[u8]) -> DecodeResult<usize>;

    /// Decodes the head; `body_len` is the packet's whole body length.
    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self>;

    /// Bytes of content that follow the head.
    fn content_len(&self) -> u64;

    fn put_head(&self, buf: &mut BytesMut);

    fn encode_head(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(Self::FIXED_LEN + MAX_FILENAME_LEN * 2);
        self.put_head(&mut b);
        b
    }
}

/// Checks that the content declared inside the head is exactly what the packet has left.
pub(crate) fn check_content(field: &'static str, declared: u64, head_len: usize, body_len: u64) -> DecodeResult<()> {
    if body_len.checked_sub(head_len as u64) != Some(declared) {
        return Err(DecodeError::OutOfRange { field, value: declared as i64 });
    }
    Ok(())
}

/// Reads an i64 filename length in `min..=max`.
pub(crate) fn name_len(r: &mut Reader<'_>, min: u64) -> DecodeResult<usize> {
    let v = r.len_field("filename length", (MAX_FILENAME_LEN - 1) as u64)?;
    if v < min {
        return Err(DecodeError::OutOfRange { field: "filename length", value: v as i64 });
    }
    Ok(v as usize)
}

/// Extension text (no dot): `[A-Za-z0-9._-]`, at most 6 bytes.
pub fn valid_ext(ext: &str) -> bool {
    ext.len() <= EXT_LEN && ext.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A slave name's prefix: the extension's characters (it ends up in a filename, and so in the
/// binlog, whose lines are split on spaces).
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= PREFIX_LEN && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// 11 UPLOAD_FILE and 23 UPLOAD_APPENDER_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadHead {
    /// −1 lets the storage choose.
    pub store_path_index: i8,
    pub file_size: u64,
    pub ext: String,
}

impl StreamedHead for UploadHead {
    const FIXED_LEN: usize = 1 + 8 + EXT_LEN;

    fn head_len(_: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let store_path_index = r.i8()?;
        let file_size = r.len_field("file_size", i64::MAX as u64)?;
        let ext = r.fixed_str(EXT_LEN)?;
        r.finish()?;
        if !valid_ext(&ext) {
            return Err(DecodeError::Invalid("file extension"));
        }
        check_content("file_size", file_size, Self::FIXED_LEN, body_len)?;
        Ok(Self { store_path_index, file_size, ext })
    }

    fn content_len(&self) -> u64 {
        self.file_size
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i8(self.store_path_index);
        b.put_i64(self.file_size as i64);
        put_fixed(b, &self.ext, EXT_LEN);
    }
}

/// 21 UPLOAD_SLAVE_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaveUploadHead {
    pub master_filename: String,
    pub file_size: u64,
    pub prefix: String,
    pub ext: String,
}

impl StreamedHead for SlaveUploadHead {
    const FIXED_LEN: usize = 8 + 8 + PREFIX_LEN + EXT_LEN;

    fn head_len(fixed: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN + name_len(&mut Reader::new(fixed), 11)?)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let master_len = name_len(&mut r, 11)?;
        let file_size = r.len_field("file_size", i64::MAX as u64)?;
        let prefix = r.fixed_str(PREFIX_LEN)?;
        let ext = r.fixed_str(EXT_LEN)?;
        let master_filename = r.str(master_len)?;
        r.finish()?;
        if prefix.is_empty() || !valid_ext(&ext) || !valid_prefix(&prefix) {
            return Err(DecodeError::Invalid("slave prefix or extension"));
        }
        check_content("file_size", file_size, head.len(), body_len)?;
        Ok(Self { master_filename, file_size, prefix, ext })
    }

    fn content_len(&self) -> u64 {
        self.file_size
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i64(self.master_filename.len() as i64);
        b.put_i64(self.file_size as i64);
        put_fixed(b, &self.prefix, PREFIX_LEN);
        put_fixed(b, &self.ext, EXT_LEN);
        b.put_slice(self.master_filename.as_bytes());
    }
}

/// 24 APPEND_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendHead {
    pub filename: String,
    pub size: u64,
}

impl StreamedHead for AppendHead {
    const FIXED_LEN: usize = 16;

    fn head_len(fixed: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN + name_len(&mut Reader::new(fixed), 1)?)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let len = name_len(&mut r, 1)?;
        let size = r.len_field("append size", i64::MAX as u64)?;
        let filename = r.str(len)?;
        r.finish()?;
        check_content("append size", size, head.len(), body_len)?;
        Ok(Self { filename, size })
    }

    fn content_len(&self) -> u64 {
        self.size
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.size as i64);
        b.put_slice(self.filename.as_bytes());
    }
}

/// 34 MODIFY_FILE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModifyHead {
    pub filename: String,
    pub offset: u64,
    pub size: u64,
}

impl StreamedHead for ModifyHead {
    const FIXED_LEN: usize = 24;

    fn head_len(fixed: &[u8]) -> DecodeResult<usize> {
        Ok(Self::FIXED_LEN + name_len(&mut Reader::new(fixed), 1)?)
    }

    fn decode_head(head: &[u8], body_len: u64) -> DecodeResult<Self> {
        let mut r = Reader::new(head);
        let len = name_len(&mut r, 1)?;
        let offset = r.len_field("file offset", i64::MAX as u64)?;
        let size = r.len_field("modify size", i64::MAX as u64)?;
        let filename = r.str(len)?;
        r.finish()?;
        check_content("modify size", size, head.len(), body_len)?;
        Ok(Self { filename, offset, size })
    }

    fn content_len(&self) -> u64 {
        self.size
    }

    fn put_head(&self, b: &mut BytesMut) {
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.offset as i64);
        b.put_i64(self.size as i64);
        b.put_slice(self.filename.as_bytes());
    }
}

/// Answer to uploads (11, 23, 21) and 38: `group[16]` + remote filename, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileIdResp {
    pub group: String,
    pub filename: String,
}

impl FileIdResp {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(GROUP_LEN + self.filename.len());
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() <= GROUP_LEN || body.len() >= GROUP_LEN + MAX_FILENAME_LEN {
            return Err(DecodeError::BadLength { len: body.len(), why: "group[16] + filename" });
        }
        let mut r = Reader::new(body);
        Ok(Self { group: r.fixed_str(GROUP_LEN)?, filename: r.rest_str()? })
    }

    pub fn file_id(&self) -> String {
        format!("{}/{}", self.group, self.filename)
    }
}

/// 14 DOWNLOAD_FILE request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownloadReq {
    pub offset: u64,
    /// 0 = to the end of the file.
    pub bytes: u64,
    pub group: String,
    pub filename: String,
}

impl DownloadReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(32 + self.filename.len());
        b.put_i64(self.offset as i64);
        b.put_i64(self.bytes as i64);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        if body.len() <= 32 || body.len() >= 32 + MAX_FILENAME_LEN {
            return Err(DecodeError::BadLength { len: body.len(), why: "16 + group[16] + filename" });
        }
        let mut r = Reader::new(body);
        Ok(Self {
            offset: r.len_field("offset", i64::MAX as u64)?,
            bytes: r.len_field("download bytes", i64::MAX as u64)?,
            group: r.fixed_str(GROUP_LEN)?,
            filename: r.rest_str()?,
        })
    }
}

/// Metadata: `name 0x02 value` pairs joined by `0x01`, sorted by name when stored.
pub type Metadata = Vec<(Vec<u8>, Vec<u8>)>;

pub const META_NAME_MAX: usize = 64;
pub const META_VALUE_MAX: usize = 256;

/// Parses packed metadata; names over 64 and values over 256 bytes are cut and records without
/// a `0x02` dropped, as FastDFS does.
pub fn parse_metadata(raw: &[u8]) -> Metadata {
    raw.split(|&b| b == 0x01)
        .filter_map(|rec| {
            let sep = rec.iter().position(|&b| b == 0x02)?;
            let (name, value) = (&rec[..sep], &rec[sep + 1..]);
            Some((name[..name.len().min(META_NAME_MAX)].to_vec(), value[..value.len().min(META_VALUE_MAX)].to_vec()))
        })
        .collect()
}

pub fn pack_metadata(meta: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (i, (n, v)) in meta.iter().enumerate() {
        if i > 0 {
            out.push(0x01);
        }
        out.extend_from_slice(n);
        out.push(0x02);
        out.extend_from_slice(v);
    }
    out
}

/// 13 SET_METADATA op flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetaOp {
    #[default]
    Overwrite,
    Merge,
}

impl MetaOp {
    pub fn byte(self) -> u8 {
        match self {
            MetaOp::Overwrite => b'O',
            MetaOp::Merge => b'M',
        }
    }
}

/// 13 SET_METADATA request (must fit the storage's buffer; not streamed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetMetadataReq {
    pub op: MetaOp,
    pub group: String,
    pub filename: String,
    /// Packed metadata as sent.
    pub meta: Vec<u8>,
}

impl SetMetadataReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(33 + self.filename.len() + self.meta.len());
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.meta.len() as i64);
        b.put_u8(self.op.byte());
        put_fixed(&mut b, &self.group, GROUP_LEN);
        b.put_slice(self.filename.as_bytes());
        b.put_slice(&self.meta);
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let name_len = name_len(&mut r, 1)?;
        let meta_len = r.len_field("metadata length", body.len() as u64)? as usize;
        let op = match r.u8()? {
            b'O' => MetaOp::Overwrite,
            b'M' => MetaOp::Merge,
            _ => return Err(DecodeError::Invalid("metadata op flag")),
        };
        let group = r.fixed_str(GROUP_LEN)?;
        let filename = r.str(name_len)?;
        let meta = r.bytes(meta_len)?.to_vec();
        r.finish()?;
        Ok(Self { op, group, filename, meta })
    }
}

wire_struct! {
    /// 22 QUERY_FILE_INFO answer: 40 bytes (16-byte IP) or 70 (46-byte IP).
    pub struct FileInfoResp {
        file_size: I64,
        create_timestamp: I64,
        /// The CRC32 sign-extended to 64 bits, as the C server sends it.
        crc32: I64,
        source_ip: FullRespIp,
    }
}

impl FileInfoResp {
    pub fn crc32_u32(&self) -> u32 {
        self.crc32 as u32
    }

    pub fn with_crc32(crc: u32) -> i64 {
        crc as i32 as i64
    }

    pub fn decode_any(body: &[u8]) -> DecodeResult<Self> {
        use super::Profile;
        match body.len() {
            40 => Self::decode(body, Profile::V6_16),
            70 => Self::decode(body, Profile::V6_16_IPV6),
            len => Err(DecodeError::BadLength { len, why: "40 or 70 bytes" }),
        }
    }
}

/// Flags in the request header's status byte of 22 (6.15.1+).
pub mod file_info_flags {
    pub const NO_CRC32: u8 = 1;
    pub const SILENT: u8 = 2;
}

/// 36 TRUNCATE_FILE request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TruncateReq {
    pub filename: String,
    pub new_size: u64,
}

impl TruncateReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(16 + self.filename.len());
        b.put_i64(self.filename.len() as i64);
        b.put_i64(self.new_size as i64);
        b.put_slice(self.filename.as_bytes());
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let len = name_len(&mut r, 1)?;
        let new_size = r.len_field("new size", i64::MAX as u64)?;
        let filename = r.str(len)?;
        r.finish()?;
        Ok(Self { filename, new_size })
    }
}

/// 38 REGENERATE_APPENDER_FILENAME: the body is the filename alone.
pub fn decode_bare_filename(body: &[u8]) -> DecodeResult<String> {
    if body.is_empty() || body.len() >= MAX_FILENAME_LEN {
        return Err(DecodeError::BadLength { len: body.len(), why: "1..127-byte filename" });
    }
    Reader::new(body).rest_str()
}

/// 20 CREATE_LINK (FastDHT de-duplication). Every name part is checked here: they end up in
/// file names and binlog lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateLinkReq {
    pub group: String,
    pub prefix: String,
    pub ext: String,
    pub master_filename: String,
    pub source_filename: String,
    pub signature: Vec<u8>,
}

impl CreateLinkReq {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::with_capacity(24 + 38 + 256);
        b.put_i64(self.master_filename.len() as i64);
        b.put_i64(self.source_filename.len() as i64);
        b.put_i64(self.signature.len() as i64);
        put_fixed(&mut b, &self.group, GROUP_LEN);
        put_fixed(&mut b, &self.prefix, PREFIX_LEN);
        put_fixed(&mut b, &self.ext, EXT_LEN);
        b.put_slice(self.master_filename.as_bytes());
        b.put_slice(self.source_filename.as_bytes());
        b.put_slice(&self.signature);
        b
    }

    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let master_len = r.len_field("master length", MAX_FILENAME_LEN as u64)? as usize;
        let source_len = name_len(&mut r, 1)?;
        let sig_len = r.len_field("signature length", 256)? as usize;
        let group = r.fixed_str(GROUP_LEN)?;
        let prefix = r.fixed_str(PREFIX_LEN)?;
        let ext = r.fixed_str(EXT_LEN)?;
        let master_filename = r.str(master_len)?;
        let source_filename = r.str(source_len)?;
        let signature = r.bytes(sig_len)?.to_vec();
        r.finish()?;
        let is_name = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !valid_ext(&ext) || !valid_prefix(&prefix) || !is_name(&master_filename) || !is_name(&source_filename) {
            return Err(DecodeError::Invalid("link prefix, extension or filename"));
        }
        Ok(Self { group, prefix, ext, master_filename, source_filename, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Profile;

    fn head_round_trip<T: StreamedHead + std::fmt::Debug + PartialEq>(h: &T) -> BytesMut {
        let b = h.encode_head();
        let len = T::head_len(&b[..T::FIXED_LEN]).unwrap();
        assert_eq!(len, b.len());
        let body_len = b.len() as u64 + h.content_len();
        assert_eq!(&T::decode_head(&b, body_len).unwrap(), h);
        assert!(T::decode_head(&b, body_len + 1).is_err(), "content longer than declared");
        assert!(T::decode_head(&b, body_len - 1).is_err() || h.content_len() == 0);
        assert!(T::decode_head(&b[..b.len() - 1], body_len).is_err());
        b
    }

    #[test]
    fn upload_head_golden() {
        let h = UploadHead { store_path_index: 0, file_size: 4096, ext: "txt".into() };
        let b = head_round_trip(&h);
        assert_eq!(&b[..], &[0, 0, 0, 0, 0, 0, 0, 0x10, 0, b't', b'x', b't', 0, 0, 0]);
        let bad = UploadHead { ext: "a/b".into(), ..h };
        assert!(UploadHead::decode_head(&bad.encode_head(), 15 + 4096).is_err());
        let neg = [0u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        assert!(UploadHead::decode_head(&neg, 14).is_err());
    }

    #[test]
    fn slave_append_modify_heads() {
        let s = SlaveUploadHead {
            master_filename: "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg".into(),
            file_size: 10,
            prefix: "_150x150".into(),
            ext: "png".into(),
        };
        let b = head_round_trip(&s);
        assert_eq!(&b[..8], &44i64.to_be_bytes());
        assert_eq!(&b[16..24], b"_150x150");
        let mut empty = s.clone();
        empty.prefix.clear();
        assert!(SlaveUploadHead::decode_head(&empty.encode_head(), 48 + 44 + 10).is_err());

        let a = AppendHead { filename: s.master_filename.clone(), size: 16 };
        let b = head_round_trip(&a);
        assert_eq!(b.len(), 16 + 44);
        let m = ModifyHead { filename: s.master_filename.clone(), offset: 3, size: 5 };
        let b = head_round_trip(&m);
        assert_eq!(&b[8..16], &3i64.to_be_bytes());
        let mut huge = b.clone();
        huge[..8].copy_from_slice(&(1i64 << 40).to_be_bytes());
        assert!(ModifyHead::head_len(&huge[..24]).is_err());
    }

    #[test]
    fn download_and_file_id() {
        let d = DownloadReq { offset: 100, bytes: 50, group: "group1".into(), filename: "M00/00/00/x.txt".into() };
        let b = d.encode();
        assert_eq!(&b[..16], &[0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 50]);
        assert_eq!(DownloadReq::decode(&b).unwrap(), d);
        assert!(DownloadReq::decode(&b[..32]).is_err());
        let r = FileIdResp { group: "group1".into(), filename: "M00/00/00/x.txt".into() };
        assert_eq!(FileIdResp::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.file_id(), "group1/M00/00/00/x.txt");
    }

    #[test]
    fn metadata_packing() {
        let meta = vec![(b"height".to_vec(), b"80".to_vec()), (b"width".to_vec(), b"160".to_vec())];
        let packed = pack_metadata(&meta);
        assert_eq!(&packed[..], b"height\x0280\x01width\x02160");
        assert_eq!(parse_metadata(&packed), meta);
        assert_eq!(parse_metadata(b"noval\x01a\x02b"), vec![(b"a".to_vec(), b"b".to_vec())]);
        let long = [vec![b'n'; 100], vec![2], vec![b'v'; 300]].concat();
        let p = parse_metadata(&long);
        assert_eq!((p[0].0.len(), p[0].1.len()), (64, 256));

        let req = SetMetadataReq {
            op: MetaOp::Merge,
            group: "group1".into(),
            filename: "M00/00/00/x.txt".into(),
            meta: packed,
        };
        let b = req.encode();
        assert_eq!(b[16], b'M');
        assert_eq!(SetMetadataReq::decode(&b).unwrap(), req);
        assert!(SetMetadataReq::decode(&b[..b.len() - 1]).is_err());
        let mut bad = b.clone();
        bad[16] = b'X';
        assert!(SetMetadataReq::decode(&bad).is_err());
    }

    #[test]
    fn file_info_crc_is_sign_extended() {
        let r = FileInfoResp {
            file_size: 4096,
            create_timestamp: 1_700_000_000,
            crc32: FileInfoResp::with_crc32(0xDEAD_BEEF),
            source_ip: "127.0.0.2".into(),
        };
        let b = r.encode(Profile::CLASSIC);
        assert_eq!(b.len(), 40);
        assert_eq!(&b[16..24], &[0xff, 0xff, 0xff, 0xff, 0xDE, 0xAD, 0xBE, 0xEF]);
        let back = FileInfoResp::decode_any(&b).unwrap();
        assert_eq!(back.crc32_u32(), 0xDEAD_BEEF);
        assert!(FileInfoResp::decode_any(&b[..39]).is_err());
    }

    #[test]
    fn truncate_regenerate_create_link() {
        let t = TruncateReq { filename: "M00/00/00/a".into(), new_size: 0 };
        assert_eq!(TruncateReq::decode(&t.encode()).unwrap(), t);
        assert!(TruncateReq::decode(&t.encode()[..20]).is_err());
        assert_eq!(decode_bare_filename(b"M00/00/00/a").unwrap(), "M00/00/00/a");
        assert!(decode_bare_filename(b"").is_err());
        let c = CreateLinkReq {
            group: "g".into(),
            prefix: "p".into(),
            ext: "jpg".into(),
            master_filename: "".into(),
            source_filename: "M00/00/00/a".into(),
            signature: vec![1, 2, 3],
        };
        assert_eq!(CreateLinkReq::decode(&c.encode()).unwrap(), c);
        for (ext, prefix, source) in
            [("a b", "p", "M00/00/00/a"), ("j\npg", "p", "M00/00/00/a"), ("jpg", "_\n", "M00/00/00/a")]
                .into_iter()
                .chain([("jpg", "p", "M00/00/00/a b"), ("jpg", "p", "M00/00/00/a\nc")])
        {
            let bad =
                CreateLinkReq { ext: ext.into(), prefix: prefix.into(), source_filename: source.into(), ..c.clone() };
            assert!(CreateLinkReq::decode(&bad.encode()).is_err(), "{ext:?} {prefix:?} {source:?} refused");
        }
    }
}
