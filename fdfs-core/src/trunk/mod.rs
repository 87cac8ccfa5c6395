//! Trunk files (PROTOCOL.md §5.7): C FastDFS with `use_trunk_file = true` packs small files
//! into large files `data/HH/LL/<trunk id, 6 digits>`. A trunk-resident file has a 60-character
//! remote filename carrying the trunk id, the slot's offset and its allocated size; the slot
//! starts with a 24-byte header that must match the name, then the content. A slot whose header
//! no longer matches (freed, or reused by a later file) means the file is gone.
//!
//! A slot of type `'L'` is a link (C's de-duplication in trunk mode): its content is the
//! remote filename (`Mxx/HH/LL/...`) of the file holding the bytes, its size that text's
//! length (so the link's own name carries that length, as C's readers require). Readers that
//! want the bytes follow it once ([`open_followed`]).
//!
//! Pure: blocking file I/O only, so the storage's disk layer and the nginx module share it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub mod live;
pub mod space;

use crate::file_id::{RemoteFilename, TrunkLocation, TRUNK_FILENAME_LEN};

/// The slot header before the content.
pub const SLOT_HEADER_LEN: u64 = 24;
/// Slot type of a regular file (0 is a free slot).
pub const SLOT_FILE: u8 = b'F';
/// Slot type of a link: the content is the target's remote filename.
pub const SLOT_LINK: u8 = b'L';
/// The longest link text C reads (its buffer is 128 bytes with the NUL).
pub const MAX_LINK_TEXT: u64 = 127;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    File,
    Link,
}

impl SlotKind {
    fn type_byte(self) -> u8 {
        match self {
            SlotKind::File => SLOT_FILE,
            SlotKind::Link => SLOT_LINK,
        }
    }
}
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
    pub kind: SlotKind,
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

/// The header a slot holding `name` (a file or a link) carries.
pub fn expected_header(name: &RemoteFilename, loc: &TrunkLocation, kind: SlotKind) -> [u8; SLOT_HEADER_LEN as usize] {
    let info = name.info();
    let mut h = [0u8; SLOT_HEADER_LEN as usize];
    h[0] = kind.type_byte();
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
    Ok(Some(Slot { file, path, content_offset: at.content_offset, size: at.size, mtime: at.mtime, kind: at.kind }))
}

/// The target a link slot names, as its text says (`Mxx/HH/LL/...`); `None` when the text is
/// not a filename of one of `store_paths` store paths.
pub fn link_target(slot: &Slot, store_paths: usize) -> std::io::Result<Option<RemoteFilename>> {
    if slot.kind != SlotKind::Link || slot.size > MAX_LINK_TEXT {
        return Ok(None);
    }
    let mut text = vec![0u8; slot.size as usize];
    slot.file.read_exact_at(&mut text, slot.content_offset)?;
    Ok(parse_link_text(&text, store_paths))
}

/// A link slot's text as the filename it names (in one of `store_paths` store paths).
pub fn parse_link_text(text: &[u8], store_paths: usize) -> Option<RemoteFilename> {
    RemoteFilename::parse(std::str::from_utf8(text).ok()?, Some(store_paths)).ok()
}

/// Opens what a trunk name reads as: its slot, or for a link slot the file it names (a trunk
/// slot holding a file, or a regular file), followed once as C does. `root_of` gives a store
/// path's root by index, `store_paths` how many there are. `Ok(None)` when any of it is gone,
/// or a slot is not one the storage recorded for that name ([`live`]).
pub fn open_followed(
    name: &RemoteFilename,
    store_paths: usize,
    root_of: impl Fn(u8) -> Option<PathBuf>,
) -> std::io::Result<Option<Slot>> {
    let Some(root) = root_of(name.store_path_index) else { return Ok(None) };
    if live::liveness(&root, name) == live::Liveness::NotLive {
        return Ok(None);
    }
    let Some(slot) = open(name, &root)? else { return Ok(None) };
    if slot.kind == SlotKind::File {
        return Ok(Some(slot));
    }
    let Some(target) = link_target(&slot, store_paths)? else { return Ok(None) };
    let Some(root) = root_of(target.store_path_index) else { return Ok(None) };
    if is_trunk_name(&target) {
        if live::liveness(&root, &target) == live::Liveness::NotLive {
            return Ok(None);
        }
        return Ok(open(&target, &root)?.filter(|s| s.kind == SlotKind::File));
    }
    let path = root.join(target.relative_path());
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let mtime = mtime.map_or(0, |d| d.as_secs() as u32);
    Ok(Some(Slot { file, path, content_offset: 0, size: meta.len(), mtime, kind: SlotKind::File }))
}

/// What serving `name` from its trunk file finds, the file already open (the nginx module
/// opens it through nginx's open file cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotView {
    /// The slot holds the file: serve `size` bytes from `content_offset`, dated `mtime`.
    File(SlotContent),
    /// A link slot (C's de-duplication): its text, the filename of the file to serve instead.
    Link(Vec<u8>),
    /// Not here for this name: freed, reused, never recorded, or the trunk file too short.
    Missing,
}

/// Reads `name`'s slot at `loc` in `file` (the trunk file of the store path at `store_root`):
/// the slot must be one the storage recorded for the name ([`live`]) and its header must hold
/// the name ([`checked`]). A link slot's text is read only with `follow_links` (C follows a
/// link once, never a link to a link).
pub fn view(
    file: &File,
    name: &RemoteFilename,
    loc: &TrunkLocation,
    store_root: &Path,
    follow_links: bool,
) -> SlotView {
    if live::liveness(store_root, name) == live::Liveness::NotLive {
        return SlotView::Missing;
    }
    let mut header = [0u8; SLOT_HEADER_LEN as usize];
    if file.read_exact_at(&mut header, loc.offset as u64).is_err() {
        return SlotView::Missing;
    }
    match checked(name, loc, &header) {
        Some(c) if c.kind == SlotKind::File => SlotView::File(c),
        Some(c) if follow_links && c.size <= MAX_LINK_TEXT => {
            let mut text = vec![0u8; c.size as usize];
            match file.read_exact_at(&mut text, c.content_offset) {
                Ok(()) => SlotView::Link(text),
                Err(_) => SlotView::Missing,
            }
        }
        _ => SlotView::Missing,
    }
}

/// Where a slot's content is, once its header was found to hold the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotContent {
    pub content_offset: u64,
    pub size: u64,
    /// The upload time from the name.
    pub mtime: u32,
    pub kind: SlotKind,
}

/// The content of `name`'s slot, if `header` (the 24 bytes at the slot's offset) holds the
/// name, as C decides: all 24 bytes equal to the header built from the name, with the type
/// (file or link) the slot says.
pub fn checked(
    name: &RemoteFilename,
    loc: &TrunkLocation,
    header: &[u8; SLOT_HEADER_LEN as usize],
) -> Option<SlotContent> {
    let info = name.info();
    let size = info.size.unwrap_or(0);
    let kind = match header[0] {
        SLOT_FILE => SlotKind::File,
        SLOT_LINK => SlotKind::Link,
        _ => return None,
    };
    if *header != expected_header(name, loc, kind) || SLOT_HEADER_LEN + size > loc.size as u64 {
        return None;
    }
    let content_offset = loc.offset as u64 + SLOT_HEADER_LEN;
    Some(SlotContent { content_offset, size, mtime: info.create_timestamp, kind })
}

/// Copies `len` bytes of `content` into the slot `name` names (a replicated trunk file or
/// link: the receiver puts it where the source has it, as C does), creating the trunk file if
/// needed. Returns the trunk file, for the caller to sync.
pub fn write(
    name: &RemoteFilename,
    store_root: &Path,
    kind: SlotKind,
    content: &mut impl Read,
    len: u64,
) -> std::io::Result<File> {
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
    file.write_all_at(&expected_header(name, &loc, kind), loc.offset as u64)?;
    Ok(file)
}

/// Frees the slot of `name` (a file or a link) as C does (its header zeroed): the name no
/// longer reads. Returns the
/// trunk file, for the caller to sync; `Ok(None)` if the slot did not hold the name.
pub fn free(name: &RemoteFilename, store_root: &Path) -> std::io::Result<Option<File>> {
    let Some(slot) = open(name, store_root)? else { return Ok(None) };
    let file = OpenOptions::new().write(true).open(&slot.path)?;
    file.write_all_at(&[0u8; SLOT_HEADER_LEN as usize], slot.content_offset - SLOT_HEADER_LEN)?;
    Ok(Some(file))
}

/// The slot a 24-byte header found at `offset` of a trunk file `file_len` bytes long says is
/// there (its allocated size), if it could be a file's, C's or ours: type, sizes, time and
/// extension all plausible. A freed slot's header is zeroed, so it never is.
pub fn plausible_header(h: &[u8; SLOT_HEADER_LEN as usize], offset: u64, file_len: u64, now: i64) -> Option<u32> {
    let int = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let (alloc, size, mtime) = (int(1), int(5), int(13));
    let plausible = matches!(h[0], SLOT_FILE | SLOT_LINK)
        && alloc as u64 >= SLOT_HEADER_LEN
        && size as u64 + SLOT_HEADER_LEN <= alloc as u64
        && offset + alloc as u64 <= file_len
        && mtime > 946_684_800
        && mtime as i64 <= now + 86_400
        && h[17..].iter().all(|&b| b == 0 || b == b' ' || b.is_ascii_graphic());
    plausible.then_some(alloc)
}

/// The first offset of trunk file `file` at which a slot header could be a live file's (see
/// [`plausible_header`]), reading the whole file once. `None`: every slot in it is free, so
/// no file of any member's naming is in it. Content of freed slots stays behind their zeroed
/// header and could, rarely, look like one: that keeps a file that could have gone, never
/// the reverse.
pub fn find_occupied(file: &File, now: i64) -> std::io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let len = file.metadata()?.len();
    let h = SLOT_HEADER_LEN as usize;
    let mut buf = vec![0u8; CHUNK + h];
    let mut at = 0u64;
    while at < len {
        // Each read overlaps the next by a header, so a header across the boundary is seen.
        let want = ((len - at) as usize).min(CHUNK + h);
        file.read_exact_at(&mut buf[..want], at)?;
        let starts = if want == CHUNK + h { CHUNK } else { want };
        for i in 0..starts {
            if matches!(buf[i], SLOT_FILE | SLOT_LINK) && i + h <= want {
                let header: &[u8; SLOT_HEADER_LEN as usize] = buf[i..i + h].try_into().expect("24 bytes");
                if plausible_header(header, at + i as u64, len, now).is_some() {
                    return Ok(Some(at + i as u64));
                }
            }
        }
        at += starts as u64;
    }
    Ok(None)
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
    fn a_slot_is_viewed_as_its_file_a_link_to_follow_or_missing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/00/00")).unwrap();
        let file = trunk_name(TrunkLocation { trunk_id: 1, offset: 0, size: 256 }, b"served bytes");
        write(&file, root.path(), SlotKind::File, &mut &b"served bytes"[..], 12).unwrap();
        let text = file.relative_path();
        let text = text.to_str().unwrap().as_bytes().to_vec();
        let link = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 256 }, &text);
        write(&link, root.path(), SlotKind::Link, &mut &text[..], text.len() as u64).unwrap();
        let (path, loc) = location(&file, root.path()).unwrap();
        let trunk = File::open(path).unwrap();
        match view(&trunk, &file, &loc, root.path(), true) {
            SlotView::File(c) => {
                let mut got = vec![0u8; c.size as usize];
                trunk.read_exact_at(&mut got, c.content_offset).unwrap();
                assert_eq!(got, b"served bytes");
                assert_eq!(c.mtime, 1_795_800_000, "the name's time");
            }
            other => panic!("{other:?}"),
        }
        let link_loc = link.trunk_location().unwrap();
        assert_eq!(view(&trunk, &link, &link_loc, root.path(), true), SlotView::Link(text));
        assert_eq!(view(&trunk, &link, &link_loc, root.path(), false), SlotView::Missing, "never followed twice");
        // Another name at the file's slot (a slot reused, a forged URL) finds nothing.
        let other = trunk_name(loc, b"other bytes!");
        assert_eq!(view(&trunk, &other, &loc, root.path(), true), SlotView::Missing);
        // Past the end of the trunk file.
        let far = TrunkLocation { trunk_id: 1, offset: 1 << 20, size: 256 };
        assert_eq!(view(&trunk, &trunk_name(far, b"x"), &far, root.path(), true), SlotView::Missing);
    }

    #[test]
    fn a_slot_reads_back_only_while_its_header_matches_the_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/00/00")).unwrap();
        let a = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 512 }, b"hello trunk");
        assert!(is_trunk_name(&a), "{a}");
        assert!(open(&a, root.path()).unwrap().is_none(), "no trunk file yet");
        write(&a, root.path(), SlotKind::File, &mut &b"hello trunk"[..], 11).unwrap();
        let slot = open(&a, root.path()).unwrap().expect("written");
        let mut got = vec![0u8; slot.size as usize];
        slot.file.read_exact_at(&mut got, slot.content_offset).unwrap();
        assert_eq!(got, b"hello trunk");
        assert_eq!(std::fs::metadata(root.path().join("data/00/00/000001")).unwrap().len(), 256 + 24 + 11);
        // A name for the same slot with other content (a later upload reusing it) does not read.
        let b = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 512 }, b"other");
        assert!(open(&b, root.path()).unwrap().is_none());
        assert!(write(&b, root.path(), SlotKind::File, &mut &b"too long for the name"[..], 21).is_err());
        assert!(
            write(&b, root.path(), SlotKind::File, &mut &b"oth"[..], 5).is_err(),
            "content shorter than its name says"
        );
        free(&a, root.path()).unwrap().expect("freed");
        assert!(open(&a, root.path()).unwrap().is_none(), "a freed slot is gone");
        assert!(free(&a, root.path()).unwrap().is_none());
    }

    #[test]
    fn an_occupied_slot_is_found_anywhere_in_a_trunk_file_and_a_freed_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/00/00")).unwrap();
        let path = root.path().join("data/00/00/000001");
        let trunk = File::create(&path).unwrap();
        trunk.set_len(3 << 20).unwrap();
        let now = 1_795_800_100;
        assert_eq!(find_occupied(&File::open(&path).unwrap(), now).unwrap(), None, "all zero");
        // A header across the first 1 MiB read and the second.
        let offset = (1 << 20) - 10;
        let a = trunk_name(TrunkLocation { trunk_id: 1, offset, size: 512 }, b"straddling");
        write(&a, root.path(), SlotKind::File, &mut &b"straddling"[..], 10).unwrap();
        assert_eq!(find_occupied(&File::open(&path).unwrap(), now).unwrap(), Some(offset as u64));
        free(&a, root.path()).unwrap().expect("freed");
        assert_eq!(find_occupied(&File::open(&path).unwrap(), now).unwrap(), None, "freed: content left, header zero");
        // One in the last bytes of the file.
        let last = (3 << 20) - 256;
        let b = trunk_name(TrunkLocation { trunk_id: 1, offset: last, size: 256 }, b"tail");
        write(&b, root.path(), SlotKind::File, &mut &b"tail"[..], 4).unwrap();
        assert_eq!(find_occupied(&File::open(&path).unwrap(), now).unwrap(), Some(last as u64));
    }

    #[test]
    fn a_link_slot_reads_as_the_file_it_names_followed_once() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/00/00")).unwrap();
        let roots = |i: u8| (i == 0).then(|| root.path().to_owned());
        let source = trunk_name(TrunkLocation { trunk_id: 1, offset: 0, size: 256 }, b"the bytes");
        write(&source, root.path(), SlotKind::File, &mut &b"the bytes"[..], 9).unwrap();
        let text = source.to_string();
        let link = trunk_name(TrunkLocation { trunk_id: 1, offset: 256, size: 256 }, text.as_bytes());
        write(&link, root.path(), SlotKind::Link, &mut text.as_bytes(), text.len() as u64).unwrap();
        let raw = open(&link, root.path()).unwrap().expect("the link slot");
        assert_eq!((raw.kind, raw.size), (SlotKind::Link, text.len() as u64));
        assert_eq!(link_target(&raw, 1).unwrap(), Some(source.clone()));
        let slot = open_followed(&link, 1, roots).unwrap().expect("followed");
        let mut got = vec![0u8; slot.size as usize];
        slot.file.read_exact_at(&mut got, slot.content_offset).unwrap();
        assert_eq!((got.as_slice(), slot.kind), (&b"the bytes"[..], SlotKind::File));
        // A link to a link is not followed again; a link to a regular file is.
        let text2 = link.to_string();
        let chain = trunk_name(TrunkLocation { trunk_id: 1, offset: 512, size: 256 }, text2.as_bytes());
        write(&chain, root.path(), SlotKind::Link, &mut text2.as_bytes(), text2.len() as u64).unwrap();
        assert!(open_followed(&chain, 1, roots).unwrap().is_none());
        let regular = "M00/00/00/wKgBCmVT8QCAEjRWAAAACd6tvu8483.txt";
        std::fs::write(root.path().join("data/00/00/wKgBCmVT8QCAEjRWAAAACd6tvu8483.txt"), b"regular!!").unwrap();
        let to_regular = trunk_name(TrunkLocation { trunk_id: 1, offset: 768, size: 256 }, regular.as_bytes());
        write(&to_regular, root.path(), SlotKind::Link, &mut regular.as_bytes(), regular.len() as u64).unwrap();
        let slot = open_followed(&to_regular, 1, roots).unwrap().expect("regular target");
        assert_eq!((slot.content_offset, slot.size), (0, 9));
        // The source freed: the link reads as gone.
        free(&source, root.path()).unwrap().expect("freed");
        assert!(open_followed(&link, 1, roots).unwrap().is_none());
        assert!(open(&link, root.path()).unwrap().is_some(), "the link slot itself is still there");
    }
}
