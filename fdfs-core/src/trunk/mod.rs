//! Trunk files (PROTOCOL.md §5.7): C FastDFS with `use_trunk_file = true` packs small files
//! into large files `data/HH/LL/<trunk id, 6 digits>`. A trunk-resident file has a 60-character
//! remote filename carrying the trunk id, the slot's offset and its allocated size; the slot
//! starts with a 24-byte header that must match the name, then the content. A slot whose header
//! no longer matches (freed, or reused by a later file) means the file is gone.
//!
//! Pure: blocking file I/O only, so the storage's disk layer and the nginx module share it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub mod space;

use crate::file_id::{RemoteFilename, TrunkLocation, TRUNK_FILENAME_LEN};

/// The slot header before the content.
pub const SLOT_HEADER_LEN: u64 = 24;
/// Slot type of a regular file (`'L'` would be a link, 0 a free slot).
pub const SLOT_FILE: u8 = b'F';
/// The formatted extension at the end of every name, stored in the header too.
const FORMATTED_EXT_LEN: usize = 7;

/// Where a trunk-resident file's bytes are, checked against its name.
#[derive(Debug)]
pub struct Slot {
    /// The trunk file, open for reading.
    pub file: File,
    pub path: PathBuf,
    /// The first content byte in the trunk file.
    pub content_offset: u64,
    pub size: u64,
    /// The upload time from the name (what C reports as the file's time).
    pub mtime: u32,
}

/// Is `name` a trunk name (as C decides: the trunk flag and exactly 60 characters)?
pub fn is_trunk_name(name: &RemoteFilename) -> bool {
    name.len() == TRUNK_FILENAME_LEN && name.info().is_trunk
}

/// The trunk file holding `name` and the slot in it; `None` for names that are not trunk names.
pub fn location(name: &RemoteFilename, store_root: &Path) -> Option<(PathBuf, TrunkLocation)> {
    if !is_trunk_name(name) {
        return None;
    }
    let loc = name.trunk_location()?;
    let path = store_root.join(format!("data/{:02X}/{:02X}/{:06}", name.high, name.low, loc.trunk_id));
    Some((path, loc))
}

/// The header a slot holding `name` carries.
pub fn expected_header(name: &RemoteFilename, loc: &TrunkLocation) -> [u8; SLOT_HEADER_LEN as usize] {
    let info = name.info();
    let mut h = [0u8; SLOT_HEADER_LEN as usize];
    h[0] = SLOT_FILE;
    h[1..5].copy_from_slice(&loc.size.to_be_bytes());
    h[5..9].copy_from_slice(&(info.size.unwrap_or(0) as u32).to_be_bytes());
    h[9..13].copy_from_slice(&info.crc32.to_be_bytes());
    h[13..17].copy_from_slice(&info.create_timestamp.to_be_bytes());
    let ext = &name.name.as_bytes()[name.name.len() - FORMATTED_EXT_LEN..];
    h[17..].copy_from_slice(ext);
    h
}

/// Opens the slot of a trunk name: `Ok(None)` when the name is not a trunk name or its slot no
/// longer holds it (freed, reused, or the trunk file is missing or too short).
pub fn open(name: &RemoteFilename, store_root: &Path) -> std::io::Result<Option<Slot>> {
    let Some((path, loc)) = location(name, store_root) else { return Ok(None) };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; SLOT_HEADER_LEN as usize];
    match file.read_exact_at(&mut header, loc.offset as u64) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let Some(at) = checked(name, &loc, &header) else { return Ok(None) };
    Ok(Some(Slot { file, path, content_offset: at.content_offset, size: at.size, mtime: at.mtime }))
}

/// Where a slot's content is, once its header was found to hold the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotContent {
    pub content_offset: u64,
    pub size: u64,
    /// The upload time from the name.
    pub mtime: u32,
}

/// The content of `name`'s slot, if `header` (the 24 bytes at the slot's offset) holds the
/// name, as C decides: all 24 bytes equal to the header built from the name.
pub fn checked(
    name: &RemoteFilename,
    loc: &TrunkLocation,
    header: &[u8; SLOT_HEADER_LEN as usize],
) -> Option<SlotContent> {
    let info = name.info();
    let size = info.size.unwrap_or(0);
    if *header != expected_header(name, loc) || SLOT_HEADER_LEN + size > loc.size as u64 {
        return None;
    }
    Some(SlotContent { content_offset: loc.offset as u64 + SLOT_HEADER_LEN, size, mtime: info.create_timestamp })
}

/// Copies `len` bytes of `content` into the slot `name` names (a replicated trunk file: the
/// receiver puts it where the source has it, as C does), creating the trunk file if needed.
/// Returns the trunk file, for the caller to sync.
pub fn write(name: &RemoteFilename, store_root: &Path, content: &mut impl Read, len: u64) -> std::io::Result<File> {
    let Some((path, loc)) = location(name, store_root) else {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "not a trunk name"));
    };
    if SLOT_HEADER_LEN + len > loc.size as u64 || name.info().size != Some(len) {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "content does not fit the slot its name gives"));
    }
    let mut file = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    // Content first, header last: a slot is valid only once both are there.
    file.seek(SeekFrom::Start(loc.offset as u64 + SLOT_HEADER_LEN))?;
    if std::io::copy(&mut content.take(len), &mut file)? != len {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    file.write_all_at(&expected_header(name, &loc), loc.offset as u64)?;
    Ok(file)
}

/// Frees the slot of `name` as C does (its header zeroed): the name no longer reads. Returns the
/// trunk file, for the caller to sync; `Ok(None)` if the slot did not hold the name.
pub fn free(name: &RemoteFilename, store_root: &Path) -> std::io::Result<Option<File>> {
    let Some(slot) = open(name, store_root)? else { return Ok(None) };
    let file = OpenOptions::new().write(true).open(&slot.path)?;
    file.write_all_at(&[0u8; SLOT_HEADER_LEN as usize], slot.content_offset - SLOT_HEADER_LEN)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_id::{self, NameKind, NewName, Source};

    fn trunk_name(loc: TrunkLocation, content: &[u8]) -> RemoteFilename {
        let n = NewName {
            source: Source::Ip("127.0.0.33".parse().unwrap()),
            timestamp: 1_795_800_000,
            size: content.len() as u64,
            crc32: crc32fast::hash(content),
            kind: NameKind::Trunk(loc),
            ext: "txt",
            store_path_index: 0,
            high: 0,
            low: 0,
        };
        file_id::generate(&n, &mut fastrand::Rng::with_seed(7))
    }

    #[test]
    fn a_slot_reads_back_only_while_its_header_matches_the_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/00/00")).unwrap();
        let a = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 512 }, b"hello trunk");
        assert!(is_trunk_name(&a), "{a}");
        assert!(open(&a, root.path()).unwrap().is_none(), "no trunk file yet");
        write(&a, root.path(), &mut &b"hello trunk"[..], 11).unwrap();
        let slot = open(&a, root.path()).unwrap().expect("written");
        let mut got = vec![0u8; slot.size as usize];
        slot.file.read_exact_at(&mut got, slot.content_offset).unwrap();
        assert_eq!(got, b"hello trunk");
        assert_eq!(std::fs::metadata(root.path().join("data/00/00/000001")).unwrap().len(), 256 + 24 + 11);
        // A name for the same slot with other content (a later upload reusing it) does not read.
        let b = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 512 }, b"other");
        assert!(open(&b, root.path()).unwrap().is_none());
        assert!(write(&b, root.path(), &mut &b"too long for the name"[..], 21).is_err());
        assert!(write(&b, root.path(), &mut &b"oth"[..], 5).is_err(), "content shorter than its name says");
        free(&a, root.path()).unwrap().expect("freed");
        assert!(open(&a, root.path()).unwrap().is_none(), "a freed slot is gone");
        assert!(free(&a, root.path()).unwrap().is_none());
    }
}
