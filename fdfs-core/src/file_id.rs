//! File IDs: `group/Mxx/HH/LL/<name>` (PROTOCOL.md §5).
//!
//! Everything about names lives here: parsing and validation (nothing that parses can escape a
//! store path), the 20-byte name core and its base64 form, generation as the C storage does it,
//! decoding back to what `fdfs_file_info` shows, slave names and trunk names.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use thiserror::Error;

use crate::protocol::{valid_group_name, MAX_FILENAME_LEN};

/// FastDFS's base64: `-` and `_` for 62/63; names are written without padding (`.`).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub const CORE_LEN: usize = 20;
pub const CORE_B64_LEN: usize = 27;
pub const EXT_PART_LEN: usize = 7;
pub const TRUNK_LOC_B64_LEN: usize = 16;
/// `Mxx/HH/LL/` + core + formatted extension.
pub const NORMAL_FILENAME_LEN: usize = 10 + CORE_B64_LEN + EXT_PART_LEN;
pub const TRUNK_FILENAME_LEN: usize = NORMAL_FILENAME_LEN + TRUNK_LOC_B64_LEN;

pub const APPENDER_FLAG: u64 = 1 << 58;
pub const TRUNK_FLAG: u64 = 1 << 59;
/// Numeric storage IDs embedded in names are 1..=this.
pub const MAX_SERVER_ID: u32 = 0x00FF_FFFF;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileIdError {
    #[error("file ID has no group part")]
    NoGroup,
    #[error("invalid group name")]
    BadGroup,
    #[error("invalid remote filename: {0}")]
    BadFilename(&'static str),
    #[error("store path index {0} out of range")]
    StorePathOutOfRange(u8),
    #[error("invalid base64 in file name")]
    BadBase64,
    #[error("invalid slave prefix or extension")]
    BadSlave,
}

impl FileIdError {
    pub fn status(&self) -> crate::protocol::Status {
        crate::protocol::Status::EINVAL
    }
}

/// A validated remote filename `Mxx/HH/LL/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteFilename {
    pub store_path_index: u8,
    pub high: u8,
    pub low: u8,
    /// The last component: core + (trunk location) + (slave prefix) + formatted extension.
    pub name: String,
    /// `name`'s first 27 characters decoded, once (the nginx module asks for them on every
    /// request). Private: only this module's constructors keep it in step with `name`.
    core: NameCore,
}

fn hex2(b: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    Some(d(b[0])? << 4 | d(b[1])?)
}

/// Characters a name component may hold: base64, digits, and the extension/prefix charset.
/// A table: every request the nginx module serves checks its name.
const NAME_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':');
        b += 1;
    }
    table
};

/// Whether every byte of `name` is one a name may hold.
fn name_chars_only(name: &str) -> bool {
    // Folded rather than `all`: without the early exit the loop is branch-free.
    name.bytes().fold(true, |ok, b| ok & NAME_CHARS[usize::from(b)])
}

impl RemoteFilename {
    /// Parses and validates; `store_path_count` bounds `Mxx` when known.
    ///
    /// Rejected: lowercase hex, anything but exactly three `/`, a name that is not at least
    /// core + formatted extension long, characters outside FastDFS's name charset (so no `/`,
    /// NUL, `%` or `..` component can appear), and names of 128 bytes or more.
    pub fn parse(s: &str, store_path_count: Option<usize>) -> Result<Self, FileIdError> {
        let (store_path_index, high, low, core) = Self::check(s, store_path_count)?;
        Ok(Self { store_path_index, high, low, name: s[10..].to_owned(), core })
    }

    /// What [`RemoteFilename::parse`] checks, without keeping the name: its `Mxx`, `HH`, `LL`
    /// and decoded core.
    pub fn check(s: &str, store_path_count: Option<usize>) -> Result<(u8, u8, u8, NameCore), FileIdError> {
        let b = s.as_bytes();
        if b.len() >= MAX_FILENAME_LEN {
            return Err(FileIdError::BadFilename("too long"));
        }
        if b.len() < NORMAL_FILENAME_LEN {
            return Err(FileIdError::BadFilename("too short"));
        }
        if b[0] != b'M' || b[3] != b'/' || b[6] != b'/' || b[9] != b'/' {
            return Err(FileIdError::BadFilename("expected Mxx/HH/LL/"));
        }
        let bad_hex = FileIdError::BadFilename("store path and subdirectories are uppercase hex");
        let store_path_index = hex2(&b[1..3]).ok_or(bad_hex.clone())?;
        let high = hex2(&b[4..6]).ok_or(bad_hex.clone())?;
        let low = hex2(&b[7..9]).ok_or(bad_hex)?;
        if let Some(count) = store_path_count {
            if store_path_index as usize >= count {
                return Err(FileIdError::StorePathOutOfRange(store_path_index));
            }
        }
        let name = &s[10..];
        if !name_chars_only(name) {
            return Err(FileIdError::BadFilename("character outside the name charset"));
        }
        Ok((store_path_index, high, low, NameCore::from_b64(&name[..CORE_B64_LEN])?))
    }

    /// Path relative to the store path: `data/HH/LL/<name>`.
    pub fn relative_path(&self) -> PathBuf {
        self.path_under(Path::new(""))
    }

    /// `root/data/HH/LL/<name>`, in one allocation and without formatting machinery: this
    /// runs for every request the nginx module serves.
    pub fn path_under(&self, root: &Path) -> PathBuf {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let root = root.as_os_str().as_bytes();
        let mut path = Vec::with_capacity(root.len() + 12 + self.name.len());
        path.extend_from_slice(root);
        if !root.is_empty() && !root.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(b"data/");
        for b in [self.high, self.low] {
            path.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)], b'/']);
        }
        path.extend_from_slice(self.name.as_bytes());
        PathBuf::from(std::ffi::OsString::from_vec(path))
    }

    /// Full path under the store path this filename's `Mxx` selects.
    pub fn local_path(&self, store_paths: &[PathBuf]) -> Option<PathBuf> {
        store_paths.get(self.store_path_index as usize).map(|root| self.path_under(root))
    }

    /// The decoded 20-byte core.
    pub fn core(&self) -> NameCore {
        self.core
    }

    /// The trunk location, for 60-character (trunk) names.
    pub fn trunk_location(&self) -> Option<TrunkLocation> {
        if self.core().size_field & TRUNK_FLAG == 0 || self.name.len() < CORE_B64_LEN + TRUNK_LOC_B64_LEN {
            return None;
        }
        TrunkLocation::from_b64(&self.name[CORE_B64_LEN..CORE_B64_LEN + TRUNK_LOC_B64_LEN])
    }

    /// Length of the whole remote filename (what readers use to detect slaves).
    pub fn len(&self) -> usize {
        10 + self.name.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn info(&self) -> FileInfo {
        FileInfo::decode(&self.core(), self.len())
    }
}

impl fmt::Display for RemoteFilename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "M{:02X}/{:02X}/{:02X}/{}", self.store_path_index, self.high, self.low, self.name)
    }
}

/// `group/remote filename`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId {
    pub group: String,
    pub remote: RemoteFilename,
}

impl FileId {
    /// Splits at the first `/` as clients do, and validates both halves.
    pub fn parse(s: &str) -> Result<Self, FileIdError> {
        let (group, remote) = s.split_once('/').ok_or(FileIdError::NoGroup)?;
        if !valid_group_name(group) {
            return Err(FileIdError::BadGroup);
        }
        Ok(Self { group: group.to_owned(), remote: RemoteFilename::parse(remote, None)? })
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.remote)
    }
}

/// Who wrote a file: the first 4 bytes of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(Ipv4Addr),
    /// A numeric storage ID (`use_storage_id` with `id_type_in_filename = id`).
    ServerId(u32),
}

impl Source {
    /// The C code stores `htonl(x)` big-endian, which on x86 puts IPv4 octets in natural order
    /// and a numeric ID little-endian.
    pub fn to_bytes(self) -> [u8; 4] {
        match self {
            Source::Ip(ip) => ip.octets(),
            Source::ServerId(id) => id.to_le_bytes(),
        }
    }

    /// Decoding rule of §5.2: read little-endian as i32; 1..=0xFFFFFF is an ID, else an IP.
    /// (An IP whose last octet is 0 is ambiguous in the format itself and reads as an ID.)
    pub fn from_bytes(b: [u8; 4]) -> Self {
        let v = i32::from_le_bytes(b);
        if v > 0 && v as u32 <= MAX_SERVER_ID {
            Source::ServerId(v as u32)
        } else {
            Source::Ip(Ipv4Addr::from(b))
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => ip.fmt(f),
            Source::ServerId(id) => id.fmt(f),
        }
    }
}

/// The 20 bytes behind the 27 base64 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameCore {
    pub source: Source,
    pub timestamp: u32,
    /// Real size plus flags and random bits (§5.4).
    pub size_field: u64,
    pub crc32: u32,
}

impl NameCore {
    pub fn to_bytes(&self) -> [u8; CORE_LEN] {
        let mut b = [0u8; CORE_LEN];
        b[..4].copy_from_slice(&self.source.to_bytes());
        b[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.size_field.to_be_bytes());
        b[16..].copy_from_slice(&self.crc32.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; CORE_LEN]) -> Self {
        Self {
            source: Source::from_bytes(b[..4].try_into().expect("4")),
            timestamp: u32::from_be_bytes(b[4..8].try_into().expect("4")),
            size_field: u64::from_be_bytes(b[8..16].try_into().expect("8")),
            crc32: u32::from_be_bytes(b[16..].try_into().expect("4")),
        }
    }

    pub fn to_b64(&self) -> String {
        B64.encode(self.to_bytes())
    }

    pub fn from_b64(s: &str) -> Result<Self, FileIdError> {
        if s.len() != CORE_B64_LEN {
            return Err(FileIdError::BadBase64);
        }
        // Decoded on the stack: this runs for every request the nginx module serves.
        let mut buf = [0u8; CORE_LEN + 1];
        match B64.decode_slice(s, &mut buf) {
            Ok(CORE_LEN) => Ok(Self::from_bytes(buf[..CORE_LEN].try_into().expect("20 bytes"))),
            _ => Err(FileIdError::BadBase64),
        }
    }
}

/// Random high bits of the size field: `(rand() & 0x007FFFFF) | 0x80000000`.
fn random_high(rng: &mut fastrand::Rng) -> u64 {
    ((rng.u32(..) & 0x007F_FFFF) | 0x8000_0000) as u64
}

/// What kind of file a new name is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Normal,
    Appender,
    Trunk(TrunkLocation),
}

/// The size field for a new name (§5.4).
pub fn size_field(kind: NameKind, size: u64, rng: &mut fastrand::Rng) -> u64 {
    match kind {
        NameKind::Normal if size >> 32 != 0 => size,
        NameKind::Normal => random_high(rng) << 32 | size,
        NameKind::Appender => random_high(rng) << 32 | APPENDER_FLAG,
        NameKind::Trunk(_) => (random_high(rng) << 32 | (size & 0xFFFF_FFFF)) | TRUNK_FLAG,
    }
}

/// The 7-character formatted extension: random digits, then `.ext` (§5.5).
pub fn format_ext(ext: &str, rng: &mut fastrand::Rng) -> String {
    let ext = &ext[..ext.len().min(6)];
    let digits = if ext.is_empty() { EXT_PART_LEN } else { 6 - ext.len() };
    let mut out = String::with_capacity(EXT_PART_LEN);
    for _ in 0..digits {
        out.push(char::from(b'0' + rng.u8(0..10)));
    }
    if !ext.is_empty() {
        out.push('.');
        out.push_str(ext);
    }
    out
}

/// Everything needed to name a new file.
#[derive(Debug, Clone)]
pub struct NewName<'a> {
    pub source: Source,
    pub timestamp: u32,
    pub size: u64,
    pub crc32: u32,
    pub kind: NameKind,
    pub ext: &'a str,
    pub store_path_index: u8,
    pub high: u8,
    pub low: u8,
}

/// Generates a remote filename as the C storage does. The caller checks uniqueness.
pub fn generate(n: &NewName<'_>, rng: &mut fastrand::Rng) -> RemoteFilename {
    let core = NameCore {
        source: n.source,
        timestamp: n.timestamp,
        size_field: size_field(n.kind, n.size, rng),
        crc32: n.crc32,
    };
    let mut name = core.to_b64();
    if let NameKind::Trunk(loc) = n.kind {
        name.push_str(&loc.to_b64());
    }
    name.push_str(&format_ext(n.ext, rng));
    RemoteFilename { store_path_index: n.store_path_index, high: n.high, low: n.low, name, core }
}

/// Keeps the random digits and `HH/LL` of `old` and swaps in a new core: the C storage names a
/// temp file first and computes the final core (real CRC, mtime) after the data is written.
pub fn with_core(old: &RemoteFilename, core: &NameCore) -> RemoteFilename {
    let mut name = core.to_b64();
    name.push_str(&old.name[CORE_B64_LEN..]);
    RemoteFilename { name, core: *core, ..old.clone() }
}

/// Where a trunk-resident file lives: 12 bytes → 16 base64 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrunkLocation {
    pub trunk_id: u32,
    pub offset: u32,
    pub size: u32,
}

impl TrunkLocation {
    pub fn to_b64(&self) -> String {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.trunk_id.to_be_bytes());
        b[4..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..].copy_from_slice(&self.size.to_be_bytes());
        B64.encode(b)
    }

    pub fn from_b64(s: &str) -> Option<Self> {
        let v = B64.decode(s).ok()?;
        let b: [u8; 12] = v.try_into().ok()?;
        Some(Self {
            trunk_id: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u32::from_be_bytes(b[4..8].try_into().ok()?),
            size: u32::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Normal,
    Appender,
    Slave,
}

/// What the name says about a file (`fdfs_file_info` without asking the storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub file_type: FileType,
    pub source: Source,
    pub create_timestamp: u32,
    /// `None` for appender and slave files: the name does not tell.
    pub size: Option<u64>,
    pub crc32: u32,
    pub is_trunk: bool,
}

impl FileInfo {
    /// The reader algorithm of §5.4; `name_len` is the remote filename's length.
    pub fn decode(core: &NameCore, name_len: usize) -> Self {
        let raw = core.size_field;
        let is_trunk = raw & TRUNK_FLAG != 0;
        let file_type = if raw & APPENDER_FLAG != 0 {
            FileType::Appender
        } else if name_len > TRUNK_FILENAME_LEN || (name_len > NORMAL_FILENAME_LEN && !is_trunk) {
            FileType::Slave
        } else {
            FileType::Normal
        };
        let size = match file_type {
            FileType::Normal if raw >> 63 != 0 || is_trunk => Some(raw & 0xFFFF_FFFF),
            FileType::Normal => Some(raw),
            _ => None,
        };
        Self { file_type, source: core.source, create_timestamp: core.timestamp, size, crc32: core.crc32, is_trunk }
    }
}

/// Slave filename from a master (§5.8): the master's name up to the `.` of its formatted
/// extension, then the prefix, then `.ext` (or the master's extension when `ext` is empty).
pub fn slave_filename(master: &str, prefix: &str, ext: &str) -> Result<String, FileIdError> {
    Ok(slave_parts(master, prefix, ext)?.concat())
}

/// Whether `name` is the name [`slave_filename`] gives, compared without making it: the nginx
/// module asks it of a thumbnail's name.
pub fn is_slave_filename(name: &str, master: &str, prefix: &str, ext: &str) -> bool {
    let Ok(parts) = slave_parts(master, prefix, ext) else { return false };
    let mut rest = name;
    parts.iter().all(|part| rest.strip_prefix(part).map(|after| rest = after).is_some()) && rest.is_empty()
}

/// A slave's name in the four pieces it is made of: the master's name before its extension,
/// the prefix, a dot or nothing, and the extension.
fn slave_parts<'a>(master: &'a str, prefix: &'a str, ext: &'a str) -> Result<[&'a str; 4], FileIdError> {
    let charset = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    // Names are ASCII; anything else could also not be sliced at byte offsets below.
    if !master.is_ascii()
        || prefix.is_empty()
        || prefix.len() > 16
        || ext.len() > 6
        || !charset(prefix)
        || !charset(ext)
    {
        return Err(FileIdError::BadSlave);
    }
    let tail_start = master.len().saturating_sub(EXT_PART_LEN);
    let dot = master[tail_start..].find('.').map(|i| tail_start + i);
    let base = &master[..dot.unwrap_or(master.len())];
    let master_ext = dot.map(|d| &master[d..]).unwrap_or("");
    let (separator, slave_ext) = match ext {
        "" => ("", master_ext),
        e if e.starts_with('.') => ("", e),
        e => (".", e),
    };
    if slave_ext.is_empty() && prefix == "-m" {
        return Err(FileIdError::BadSlave);
    }
    let parts = [base, prefix, separator, slave_ext];
    if parts.iter().map(|p| p.len()).sum::<usize>() >= MAX_FILENAME_LEN {
        return Err(FileIdError::BadSlave);
    }
    Ok(parts)
}

/// PJW hash used by `file_distribute_path_mode = 1` (§5.6).
pub fn pjw_hash(data: &[u8]) -> u32 {
    let mut h: i32 = 0;
    for &b in data {
        h = h.wrapping_shl(4).wrapping_add(b as i32);
        let t = h & (0xF000_0000u32 as i32);
        if t != 0 {
            h = (h ^ (t >> 24)) & 0x0FFF_FFFF;
        }
    }
    h as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg";

    fn example_core() -> NameCore {
        NameCore {
            source: Source::Ip(Ipv4Addr::new(192, 168, 1, 10)),
            timestamp: 1_700_000_000,
            size_field: 0x8012_3456_0000_3039,
            crc32: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn worked_example_of_section_5_10() {
        let core = example_core();
        assert_eq!(
            core.to_bytes(),
            [
                0xC0, 0xA8, 0x01, 0x0A, 0x65, 0x53, 0xF1, 0x00, 0x80, 0x12, 0x34, 0x56, 0x00, 0x00, 0x30, 0x39, 0xDE,
                0xAD, 0xBE, 0xEF
            ]
        );
        assert_eq!(core.to_b64(), "wKgBCmVT8QCAEjRWAAAwOd6tvu8");
        let r = RemoteFilename::parse(EXAMPLE, Some(1)).unwrap();
        assert_eq!(r.len(), 44);
        assert_eq!(r.to_string(), EXAMPLE);
        let info = r.info();
        assert_eq!(info.file_type, FileType::Normal);
        assert_eq!(info.source.to_string(), "192.168.1.10");
        assert_eq!(info.create_timestamp, 1_700_000_000);
        assert_eq!(info.size, Some(12345));
        assert_eq!(info.crc32, 0xDEAD_BEEF);

        let by_id = NameCore { source: Source::ServerId(100001), ..core };
        assert_eq!(by_id.to_b64(), "oYYBAGVT8QCAEjRWAAAwOd6tvu8");
        assert_eq!(NameCore::from_b64("oYYBAGVT8QCAEjRWAAAwOd6tvu8").unwrap().source, Source::ServerId(100001));

        let loc = TrunkLocation { trunk_id: 1, offset: 1024, size: 4096 };
        assert_eq!(loc.to_b64(), "AAAAAQAABAAAABAA");
        assert_eq!(TrunkLocation::from_b64("AAAAAQAABAAAABAA"), Some(loc));
    }

    #[test]
    fn captured_names_decode() {
        // From capture `upload_file_4k`: 127.0.0.2 wrote a 4096-byte .txt.
        let r = RemoteFilename::parse("M00/01/D9/fwAAAmsF8IKAV3hxAAAQAF5OGZU021.txt", Some(1)).unwrap();
        assert_eq!((r.high, r.low), (0x01, 0xD9));
        let info = r.info();
        assert_eq!(info.source, Source::Ip(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(info.size, Some(4096));
        assert_eq!(r.relative_path(), std::path::Path::new("data/01/D9/fwAAAmsF8IKAV3hxAAAQAF5OGZU021.txt"));
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [
            "",
            "M00/00/00/",
            "M00/00/00/../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaa",
            "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jp/",
            "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483\0jpg",
            "m00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg",
            "M00/0a/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg",
            "M0G/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg",
            "M00//0/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg",
            "/M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg",
            "M00/00/00/wKgB%2e%2e8QCAEjRWAAAwOd6tvu8483.jpg",
            "M00/00/00/wKgB*mVT8QCAEjRWAAAwOd6tvu8483.jpg",
        ] {
            assert!(RemoteFilename::parse(bad, Some(1)).is_err(), "{bad:?} accepted");
        }
        let long = format!("{EXAMPLE}{}", "a".repeat(100));
        assert!(RemoteFilename::parse(&long, None).is_err());
        assert_eq!(
            RemoteFilename::parse("M01/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg", Some(1)),
            Err(FileIdError::StorePathOutOfRange(1))
        );
        assert!(FileId::parse("group1").is_err());
        assert!(FileId::parse("gr..up/M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg").is_err());
        assert_eq!(FileId::parse(&format!("group1/{EXAMPLE}")).unwrap().to_string(), format!("group1/{EXAMPLE}"));
    }

    #[test]
    fn formatted_extensions() {
        let mut rng = fastrand::Rng::with_seed(7);
        for (ext, dot_at) in [("jpg", Some(3)), ("jpeg", Some(2)), ("abcdef", Some(0)), ("", None)] {
            let f = format_ext(ext, &mut rng);
            assert_eq!(f.len(), 7);
            assert_eq!(f.find('.'), dot_at);
            assert!(f.ends_with(ext));
        }
    }

    #[test]
    fn slave_names() {
        assert_eq!(
            slave_filename(EXAMPLE, "_150x150", "png").unwrap(),
            "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483_150x150.png"
        );
        assert_eq!(slave_filename(EXAMPLE, "_big", "").unwrap(), "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483_big.jpg");
        let no_ext = "M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu84830271";
        assert_eq!(slave_filename(no_ext, "_s", "").unwrap(), format!("{no_ext}_s"));
        assert!(slave_filename(no_ext, "-m", "").is_err());
        assert!(slave_filename(EXAMPLE, "", "png").is_err());
        assert!(slave_filename(EXAMPLE, "a/b", "png").is_err());
        assert!(slave_filename("M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8éé.jpg", "_s", "").is_err());
        let s = RemoteFilename::parse(&slave_filename(EXAMPLE, "_s", "").unwrap(), Some(1)).unwrap();
        assert_eq!(s.info().file_type, FileType::Slave);
        assert_eq!(s.info().size, None);
    }

    #[test]
    fn a_slave_name_is_recognised_only_as_made() {
        for (prefix, ext) in [("_150x150", "png"), ("_big", ""), ("_s", ".x"), ("-m", "")] {
            let made = slave_filename(EXAMPLE, prefix, ext).unwrap();
            assert!(is_slave_filename(&made, EXAMPLE, prefix, ext), "{made}");
            assert!(!is_slave_filename(&format!("{made}x"), EXAMPLE, prefix, ext));
            assert!(!is_slave_filename(&made[..made.len() - 1], EXAMPLE, prefix, ext));
        }
        assert!(!is_slave_filename("M00/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.png", EXAMPLE, "", "png"));
        let too_long = "x".repeat(MAX_FILENAME_LEN);
        assert!(!is_slave_filename(&too_long, &too_long[..MAX_FILENAME_LEN - 6], "_s", ""));
    }

    #[test]
    fn a_path_under_a_root_is_the_joined_one() {
        let r = RemoteFilename::parse(EXAMPLE, None).unwrap();
        for root in ["/data/fdfs", "/data/fdfs/", "rel", "/"] {
            assert_eq!(r.path_under(Path::new(root)), Path::new(root).join(r.relative_path()));
        }
        assert_eq!(r.relative_path(), Path::new("data/00/00/wKgBCmVT8QCAEjRWAAAwOd6tvu8483.jpg"));
        assert_eq!(r.core(), NameCore::from_b64(&r.name[..CORE_B64_LEN]).unwrap());
    }

    #[test]
    fn pjw_matches_reference_steps() {
        assert_eq!(pjw_hash(b""), 0);
        assert_eq!(pjw_hash(b"a"), 97);
        assert_eq!(pjw_hash(b"ab"), 97 * 16 + 98);
        // Long inputs fold the top nibble back in and never set it.
        assert_eq!(pjw_hash(&[0xff; 64]) & 0xF000_0000, 0);
    }

    fn any_kind() -> impl Strategy<Value = NameKind> {
        prop_oneof![
            Just(NameKind::Normal),
            Just(NameKind::Appender),
            (any::<u32>(), any::<u32>(), any::<u32>())
                .prop_map(|(trunk_id, offset, size)| { NameKind::Trunk(TrunkLocation { trunk_id, offset, size }) }),
        ]
    }

    proptest! {
        #[test]
        fn generate_format_parse_decode_round_trip(
            ip in any::<[u8; 4]>(),
            id in 1u32..=MAX_SERVER_ID,
            use_id in any::<bool>(),
            timestamp in any::<u32>(),
            size in 0u64..(1u64 << 40),
            crc in any::<u32>(),
            kind in any_kind(),
            ext in "[a-z0-9]{0,6}",
            idx in 0u8..4, high in any::<u8>(), low in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let source = if use_id { Source::ServerId(id) } else { Source::Ip(Ipv4Addr::from(ip)) };
            prop_assume!(use_id || !(1..=MAX_SERVER_ID as i32).contains(&i32::from_le_bytes(ip)));
            let size = if matches!(kind, NameKind::Trunk(_)) { size & 0xFFFF_FFFF } else { size };
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = NewName { source, timestamp, size, crc32: crc, kind, ext: &ext, store_path_index: idx, high, low };
            let name = generate(&n, &mut rng);
            let text = name.to_string();
            let back = RemoteFilename::parse(&text, Some(4)).unwrap();
            prop_assert_eq!(&back, &name);
            let info = back.info();
            prop_assert_eq!(info.source, source);
            prop_assert_eq!(info.create_timestamp, timestamp);
            match kind {
                NameKind::Normal => {
                    prop_assert_eq!(text.len(), 44);
                    prop_assert_eq!(info.file_type, FileType::Normal);
                    prop_assert_eq!(info.size, Some(size));
                    prop_assert_eq!(info.crc32, crc);
                }
                NameKind::Appender => {
                    prop_assert_eq!(info.file_type, FileType::Appender);
                    prop_assert_eq!(info.size, None);
                }
                NameKind::Trunk(loc) => {
                    prop_assert_eq!(text.len(), 60);
                    prop_assert!(info.is_trunk);
                    prop_assert_eq!(info.size, Some(size));
                    prop_assert_eq!(back.trunk_location(), Some(loc));
                }
            }
            let slave = slave_filename(&text, "_t", "").unwrap();
            if kind != NameKind::Appender {
                prop_assert_eq!(RemoteFilename::parse(&slave, None).unwrap().info().file_type, FileType::Slave);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,140}") {
            let _ = RemoteFilename::parse(&s, Some(2));
            let _ = FileId::parse(&s);
        }

        #[test]
        fn parse_never_panics_near_valid(prefix in "M[0-9A-Fa-f]{2}/[0-9A-F]{2}/[0-9A-F]{2}/", tail in "[A-Za-z0-9_./%-]{0,120}") {
            let s = format!("{prefix}{tail}");
            if let Ok(r) = RemoteFilename::parse(&s, None) {
                let p = r.relative_path();
                prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                prop_assert_eq!(p.components().count(), 4);
            }
        }
    }
}
