//! Which trunk slots hold a live file, per store path: `<store path>/data/.trunk_slots`.
//!
//! A slot's header is checked against the name that is read, but the header is 24 bytes anyone
//! can put inside their own upload; a crafted name pointing at such a fake header, with a
//! large size, would read past the uploader's slot into other files. What decides whether a
//! slot holds a file is what the storage recorded: every trunk name created here (uploads,
//! replicas, link slots, recovered files) and not deleted since. The storage keeps that set in
//! this file; the storage's downloads and the nginx module read a slot only if the set has
//! it with the name's allocated size. Where the file does not exist (a store path a C storage
//! runs, or the module before our storage ever started there), slots are read as C reads them.
//!
//! Layout: a header (`FDFSLIVE`, version, capacity, clean flag, replaced flag) in a 4 KiB
//! page, then `capacity` (a power of two) entries of 16 bytes, open addressing with linear
//! probing: trunk id, offset, allocated size, tag (CRC32 of the name with the top bit set;
//! 0 = empty, 1 = removed). One writer (the storage, under a lock); readers use `pread` only,
//! on a descriptor each thread keeps (an nginx worker serves many requests with one): a table
//! the writer replaces (grown, or rebuilt) is marked replaced first, and readers open the file
//! again when they see that, or after a second in any case. It is not synced: after an
//! unclean stop the storage rebuilds it from its binlog.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::file_id::RemoteFilename;

pub const FILE_NAME: &str = ".trunk_slots";
const MAGIC: &[u8; 8] = b"FDFSLIVE";
const VERSION: u32 = 1;
const DATA_AT: u64 = 4096;
const ENTRY: u64 = 16;
/// Entries read at once when probing (one page).
const PAGE: u64 = DATA_AT / ENTRY;
const EMPTY: u32 = 0;
const REMOVED: u32 = 1;
const FIRST_CAPACITY: u64 = 4096;
/// Header bytes: clean (the last stop was clean), replaced (open the path again).
const CLEAN_AT: u64 = 24;
const REPLACED_AT: u64 = 25;
/// How long a reader keeps a descriptor before it opens the path again (a table removed with
/// its disk is never marked replaced).
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Entries read first: with the table at most 60% full, the key or an empty entry is almost
/// always among them.
const FIRST_READ: u64 = 4;

/// The index file of the store path at `store_root`.
pub fn path_of(store_root: &Path) -> PathBuf {
    store_root.join("data").join(FILE_NAME)
}

/// The CRC32 of `Mxx/HH/LL/name`, with the top bit set (never empty nor removed).
fn tag_of(name: &RemoteFilename) -> u32 {
    crc32fast::hash(name.to_string().as_bytes()) | 0x8000_0000
}

fn home(trunk_id: u32, offset: u32, capacity: u64) -> u64 {
    // splitmix64's finaliser: consecutive offsets spread over the table.
    let mut z = (u64::from(trunk_id) << 32 | u64::from(offset)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & (capacity - 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    trunk_id: u32,
    offset: u32,
    alloc: u32,
    tag: u32,
}

impl Entry {
    fn decode(b: &[u8]) -> Self {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Entry { trunk_id: u(0), offset: u(4), alloc: u(8), tag: u(12) }
    }

    fn encode(&self) -> [u8; ENTRY as usize] {
        let mut b = [0u8; ENTRY as usize];
        for (i, v) in [self.trunk_id, self.offset, self.alloc, self.tag].into_iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn is_live(&self) -> bool {
        self.tag > REMOVED
    }
}

/// The header's capacity and clean flag, if it is ours and not replaced.
fn capacity_of(file: &File) -> std::io::Result<Option<(u64, bool)>> {
    let mut h = [0u8; 32];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let capacity = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    let bad = &h[..8] != MAGIC || version != VERSION || !capacity.is_power_of_two() || capacity > 1 << 32;
    if bad || h[REPLACED_AT as usize] == 1 {
        return Ok(None);
    }
    Ok(Some((capacity, h[CLEAN_AT as usize] == 1)))
}

/// Where `name`'s key is in the table of `file`: the entry's index and the entry, or `None`
/// when the key is not there. `Err` only for I/O errors.
fn find(file: &File, capacity: u64, trunk_id: u32, offset: u32) -> std::io::Result<Option<(u64, Entry)>> {
    let mut at = home(trunk_id, offset, capacity);
    let mut page = [0u8; (PAGE * ENTRY) as usize];
    let mut probed = 0;
    let mut want = FIRST_READ;
    while probed < capacity {
        let n = want.min(PAGE - at % PAGE).min(capacity - at);
        want = PAGE;
        let bytes = &mut page[..(n * ENTRY) as usize];
        file.read_exact_at(bytes, DATA_AT + at * ENTRY)?;
        for (i, raw) in bytes.chunks_exact(ENTRY as usize).enumerate() {
            let e = Entry::decode(raw);
            if e.tag == EMPTY {
                return Ok(None);
            }
            if e.trunk_id == trunk_id && e.offset == offset {
                return Ok(Some((at + i as u64, e)));
            }
        }
        probed += n;
        at = (at + n) % capacity;
    }
    Ok(None)
}

/// What a reader learns about a trunk name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The storage recorded this name in this slot, with this allocated size.
    Live,
    /// It did not: the slot is not read for this name.
    NotLive,
    /// No index for the store path (a C storage's, or ours never started): read as C reads.
    Unknown,
}

thread_local! {
    /// This thread's descriptor of each store path's index (by the store path's root): the
    /// file, its capacity, and when it was opened.
    static OPEN: RefCell<HashMap<PathBuf, (File, u64, Instant)>> = RefCell::new(HashMap::new());
}

/// Opens the index at `path` with its capacity; `None`: there is none.
fn open_index(path: &Path) -> std::io::Result<Option<(File, u64)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match capacity_of(&file)? {
        Some((capacity, _)) => Ok(Some((file, capacity))),
        None => Err(ErrorKind::InvalidData.into()),
    }
}

/// Whether the slot `name` names (in the store path at `store_root`) holds it. A read error
/// of the index counts as not live.
///
/// The descriptor this thread keeps answers a name it has at once (one `pread`): a table the
/// storage replaced since held only names it recorded, and the slot's header is checked after
/// this anyway. A name it lacks is looked up again in the table at the path, if that is
/// another one now; and every descriptor is renewed after [`REOPEN_AFTER`].
pub fn liveness(store_root: &Path, name: &RemoteFilename) -> Liveness {
    let Some(loc) = name.trunk_location() else { return Liveness::NotLive };
    let tag = tag_of(name);
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if let Some((file, capacity, at)) = open.get(store_root) {
            if at.elapsed() < REOPEN_AFTER {
                let found = lookup(file, *capacity, &loc, tag);
                // Still the table at the path: its answer stands.
                if found == Liveness::Live || matches!(capacity_of(file), Ok(Some(_))) {
                    return found;
                }
            }
        }
        open.remove(store_root);
        match open_index(&path_of(store_root)) {
            Ok(Some((file, capacity))) => {
                let found = lookup(&file, capacity, &loc, tag);
                open.insert(store_root.to_owned(), (file, capacity, Instant::now()));
                found
            }
            Ok(None) => Liveness::Unknown,
            Err(_) => Liveness::NotLive,
        }
    })
}

fn lookup(file: &File, capacity: u64, loc: &crate::file_id::TrunkLocation, tag: u32) -> Liveness {
    // A second look guards against an entry read while the storage was writing it.
    for _ in 0..2 {
        match find(file, capacity, loc.trunk_id, loc.offset) {
            Ok(Some((_, e))) if e.is_live() && e.alloc == loc.size && e.tag == tag => return Liveness::Live,
            Ok(Some(_)) => continue,
            _ => return Liveness::NotLive,
        }
    }
    Liveness::NotLive
}

/// The storage's side: the one writer of a store path's index.
#[derive(Debug)]
pub struct LiveSlots {
    file: File,
    path: PathBuf,
    capacity: u64,
    /// Entries that are not empty (live or removed): the table grows past 60% of them.
    used: u64,
}

impl LiveSlots {
    /// Opens the index of the store path at `store_root`; `false` with it when it must be
    /// rebuilt (new, not ours, not closed cleanly, or not whole): it is then empty. Marked not
    /// clean from here on. A damaged table never stops the storage: it is only derived state.
    pub fn open(store_root: &Path) -> std::io::Result<(Self, bool)> {
        let path = path_of(store_root);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let trusted = match capacity_of(&file) {
            Ok(Some((capacity, true))) if file.metadata()?.len() == DATA_AT + capacity * ENTRY => {
                let mut used = 0;
                scan(&file, capacity, |e| used += u64::from(e.tag != EMPTY)).ok().map(|()| (capacity, used))
            }
            _ => None,
        };
        let (slots, clean) = match trusted {
            Some((capacity, used)) => (LiveSlots { file, path, capacity, used }, true),
            None => {
                let fresh = Self::create(&path, FIRST_CAPACITY)?;
                Self::mark_replaced(&file)?;
                (fresh, false)
            }
        };
        slots.set_clean(false)?;
        Ok((slots, clean))
    }

    /// A new, empty table of `capacity` entries at `path` (written beside it, renamed over).
    fn create(path: &Path, capacity: u64) -> std::io::Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp = crate::durable::TempFile::create_in(dir, "slots")?;
        let mut header = [0u8; 32];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&capacity.to_le_bytes());
        temp.file().write_all_at(&header, 0)?;
        temp.file().set_len(DATA_AT + capacity * ENTRY)?;
        temp.replace(path)?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(LiveSlots { file, path: path.to_owned(), capacity, used: 0 })
    }

    fn set_clean(&self, clean: bool) -> std::io::Result<()> {
        self.file.write_all_at(&[u8::from(clean)], CLEAN_AT)
    }

    /// Readers holding this table open it again (it was renamed over).
    fn mark_replaced(file: &File) -> std::io::Result<()> {
        file.write_all_at(&[1], REPLACED_AT)
    }

    /// At a clean stop: the next start trusts the table as it is.
    pub fn close(&self) -> std::io::Result<()> {
        self.file.sync_data()?;
        self.set_clean(true)?;
        self.file.sync_data()
    }

    /// `name` (a trunk name) now holds its slot: recorded, replacing whatever was recorded
    /// for that slot before.
    pub fn insert(&mut self, name: &RemoteFilename) -> std::io::Result<()> {
        let Some(loc) = name.trunk_location() else { return Ok(()) };
        let entry = Entry { trunk_id: loc.trunk_id, offset: loc.offset, alloc: loc.size, tag: tag_of(name) };
        if let Some((at, _)) = find(&self.file, self.capacity, loc.trunk_id, loc.offset)? {
            return self.write(at, &entry);
        }
        if (self.used + 1) * 10 > self.capacity * 6 {
            self.grow()?;
        }
        let at = self.free_place(loc.trunk_id, loc.offset)?;
        self.used += 1;
        self.write(at, &entry)
    }

    /// `name` no longer holds its slot (deleted). A later file in the same slot is kept.
    pub fn remove(&mut self, name: &RemoteFilename) -> std::io::Result<()> {
        let Some(loc) = name.trunk_location() else { return Ok(()) };
        match find(&self.file, self.capacity, loc.trunk_id, loc.offset)? {
            Some((at, e)) if e.tag == tag_of(name) => self.write(at, &Entry { tag: REMOVED, ..e }),
            _ => Ok(()),
        }
    }

    fn write(&self, at: u64, e: &Entry) -> std::io::Result<()> {
        self.file.write_all_at(&e.encode(), DATA_AT + at * ENTRY)
    }

    /// The first empty entry from the key's home on.
    fn free_place(&self, trunk_id: u32, offset: u32) -> std::io::Result<u64> {
        let mut at = home(trunk_id, offset, self.capacity);
        let mut raw = [0u8; ENTRY as usize];
        loop {
            self.file.read_exact_at(&mut raw, DATA_AT + at * ENTRY)?;
            if Entry::decode(&raw).tag == EMPTY {
                return Ok(at);
            }
            at = (at + 1) % self.capacity;
        }
    }

    /// A table twice as large (or as large, when removed entries fill it) with the live
    /// entries only, renamed over this one.
    fn grow(&mut self) -> std::io::Result<()> {
        let mut live = Vec::new();
        scan(&self.file, self.capacity, |e| {
            if e.is_live() {
                live.push(e);
            }
        })?;
        let mut capacity = self.capacity;
        while (live.len() as u64 + 1) * 10 > capacity * 3 {
            capacity *= 2;
        }
        let mut next = Self::create(&self.path.with_extension("next"), capacity)?;
        for e in &live {
            let at = next.free_place(e.trunk_id, e.offset)?;
            next.write(at, e)?;
            next.used += 1;
        }
        std::fs::rename(&next.path, &self.path)?;
        Self::mark_replaced(&self.file)?;
        next.path = self.path.clone();
        next.set_clean(false)?;
        *self = next;
        Ok(())
    }
}

/// Every entry of the table in `file`, a page at a time.
fn scan(file: &File, capacity: u64, mut f: impl FnMut(Entry)) -> std::io::Result<()> {
    let mut page = [0u8; (PAGE * ENTRY) as usize];
    let mut at = 0;
    while at < capacity {
        let n = PAGE.min(capacity - at);
        let bytes = &mut page[..(n * ENTRY) as usize];
        file.read_exact_at(bytes, DATA_AT + at * ENTRY)?;
        bytes.chunks_exact(ENTRY as usize).map(Entry::decode).for_each(&mut f);
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_id::{NameKind, NewName, Source, TrunkLocation};

    fn name(trunk_id: u32, offset: u32, size: u32, crc32: u32) -> RemoteFilename {
        let n = NewName {
            source: Source::Ip(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            timestamp: 1_700_000_000,
            size: 100,
            crc32,
            kind: NameKind::Trunk(TrunkLocation { trunk_id, offset, size }),
            ext: "jpg",
            store_path_index: 0,
            high: 0,
            low: 0,
        };
        crate::file_id::generate(&n, &mut fastrand::Rng::with_seed(u64::from(crc32)))
    }

    #[test]
    fn names_are_live_until_removed_and_a_later_occupant_survives_an_earlier_delete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let a = name(1, 0, 512, 7);
        assert_eq!(liveness(dir.path(), &a), Liveness::Unknown, "no index: as C");
        let (mut live, clean) = LiveSlots::open(dir.path()).unwrap();
        assert!(!clean, "new: rebuilt");
        assert_eq!(liveness(dir.path(), &a), Liveness::NotLive);
        live.insert(&a).unwrap();
        assert_eq!(liveness(dir.path(), &a), Liveness::Live);
        assert_eq!(liveness(dir.path(), &name(1, 0, 4096, 7)), Liveness::NotLive, "another allocated size");
        assert_eq!(liveness(dir.path(), &name(1, 24, 512, 7)), Liveness::NotLive, "inside the slot");
        // The slot freed and handed to another file before the first one's delete is recorded.
        let b = name(1, 0, 512, 9);
        live.insert(&b).unwrap();
        live.remove(&a).unwrap();
        assert_eq!(liveness(dir.path(), &b), Liveness::Live);
        assert_eq!(liveness(dir.path(), &a), Liveness::NotLive);
        live.remove(&b).unwrap();
        assert_eq!(liveness(dir.path(), &b), Liveness::NotLive);
    }

    #[test]
    fn the_table_grows_and_a_clean_close_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let (mut live, _) = LiveSlots::open(dir.path()).unwrap();
        let names: Vec<RemoteFilename> = (0..10_000).map(|i| name(1 + i / 1000, (i % 1000) * 256, 256, i)).collect();
        live.insert(&names[0]).unwrap();
        assert_eq!(liveness(dir.path(), &names[0]), Liveness::Live, "this thread keeps the small table open");
        for n in &names[1..] {
            live.insert(n).unwrap();
        }
        assert_eq!(liveness(dir.path(), &names[9_999]), Liveness::Live, "a grown table is seen at once");
        for n in names.iter().step_by(2) {
            live.remove(n).unwrap();
        }
        assert!(live.capacity > FIRST_CAPACITY);
        live.close().unwrap();
        drop(live);
        let (_, clean) = LiveSlots::open(dir.path()).unwrap();
        assert!(clean);
        for (i, n) in names.iter().enumerate() {
            let want = if i % 2 == 0 { Liveness::NotLive } else { Liveness::Live };
            assert_eq!(liveness(dir.path(), n), want, "{i}");
        }
        let (live, clean) = LiveSlots::open(dir.path()).unwrap();
        assert!(!clean, "not closed since: rebuilt");
        // A clean table cut short (a full disk, a hand) is rebuilt, not a reason not to start.
        live.close().unwrap();
        drop(live);
        OpenOptions::new().write(true).open(path_of(dir.path())).unwrap().set_len(5000).unwrap();
        let (_, clean) = LiveSlots::open(dir.path()).unwrap();
        assert!(!clean, "a short table: rebuilt");
    }
}
