//! The trunk server's free-space map and the trunk binlog that persists it (PROTOCOL.md §5.7,
//! §7.8). Pure: the storage feeds it binlog lines and writes the lines it returns.
//!
//! The binlog (`<base_path>/data/trunk/binlog`) records the free blocks, as C writes it: `A`
//! adds a free block, `D` removes one. An allocation is `D` of the block it comes from, `A` of
//! the remainder, `A` of the slot (held: not handed out again, but free should the writer
//! never confirm it), and the confirmation `D` of the slot. Replaying the lines in order
//! gives back the free blocks; a slot whose confirmation never made it to disk comes back
//! free, which is why the confirmation must be durable before the upload is answered.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::trunk::SLOT_HEADER_LEN;

/// A run of bytes in one trunk file: where the file is (store path, `HH/LL`, id) and which
/// bytes of it (offset, size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub path: u8,
    pub high: u8,
    pub low: u8,
    pub trunk_id: u32,
    pub offset: u32,
    pub size: u32,
}

impl Block {
    fn end(&self) -> u64 {
        self.offset as u64 + self.size as u64
    }

    /// Where the block sits, for the position index (a trunk id is unique per store path).
    fn key(&self) -> Pos {
        (self.path, self.trunk_id, self.offset)
    }
}

type Pos = (u8, u32, u32);

/// `A` or `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceOp {
    Add,
    Delete,
}

/// One line of the trunk binlog: `timestamp op path high low trunk_id offset size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceRecord {
    pub timestamp: i64,
    pub op: SpaceOp,
    pub block: Block,
}

impl SpaceRecord {
    pub fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_ascii_whitespace();
        let timestamp = f.next()?.parse().ok()?;
        let op = match f.next()? {
            "A" => SpaceOp::Add,
            "D" => SpaceOp::Delete,
            _ => return None,
        };
        let mut n = || f.next().and_then(|v| v.parse::<u32>().ok());
        let (path, high, low) = (n()?, n()?, n()?);
        let block = Block {
            path: u8::try_from(path).ok()?,
            high: u8::try_from(high).ok()?,
            low: u8::try_from(low).ok()?,
            trunk_id: n()?,
            offset: n()?,
            size: n()?,
        };
        if f.next().is_some() || block.size == 0 {
            return None;
        }
        Some(Self { timestamp, op, block })
    }

    /// The line, with its newline.
    pub fn line(&self) -> String {
        let b = &self.block;
        let op = if self.op == SpaceOp::Add { 'A' } else { 'D' };
        format!("{} {op} {} {} {} {} {} {}\n", self.timestamp, b.path, b.high, b.low, b.trunk_id, b.offset, b.size)
    }
}

/// The cluster-wide trunk settings (the tracker's, from PARAMETER_REQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkSettings {
    pub slot_min_size: u32,
    pub slot_max_size: u32,
    pub alignment: u32,
    pub trunk_file_size: u32,
    /// `trunk_free_space_merge`: a freed slot is joined with free neighbours.
    pub merge: bool,
}

impl Default for TrunkSettings {
    /// C's defaults.
    fn default() -> Self {
        Self { slot_min_size: 256, slot_max_size: 16 << 20, alignment: 0, trunk_file_size: 64 << 20, merge: true }
    }
}

impl TrunkSettings {
    /// The slot a file of `content_len` bytes takes (header included), or `None` when such a
    /// file is not put in a trunk (C: content + 24 > `slot_max_size`).
    pub fn slot_size(&self, content_len: u64) -> Option<u32> {
        let need = content_len + SLOT_HEADER_LEN;
        if need > self.slot_max_size as u64 || need > self.trunk_file_size as u64 {
            return None;
        }
        let aligned = match self.alignment {
            0 | 1 => need,
            a => need.div_ceil(a as u64) * a as u64,
        };
        Some(aligned.max(self.slot_min_size as u64).min(self.trunk_file_size as u64) as u32)
    }
}

/// What an allocation needs from the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Alloc {
    /// The slot (held until [`FreeSpace::confirm`] or [`FreeSpace::release`]) and the lines
    /// to append.
    Slot(Block, Vec<SpaceRecord>),
    /// No free block is large enough: create trunk file `trunk_id` (`trunk_file_size` bytes)
    /// and report it with [`FreeSpace::add_trunk_file`].
    NewTrunkFile { trunk_id: u32 },
}

/// The free blocks of every store path's trunk files, and the slots handed out but not yet
/// confirmed.
#[derive(Debug, Default)]
pub struct FreeSpace {
    settings: TrunkSettings,
    /// Free blocks by position.
    by_pos: BTreeMap<Pos, Block>,
    /// Free blocks by (store path, size, position): the smallest one that fits is found first.
    by_size: BTreeSet<(u8, u32, Pos)>,
    held: HashMap<Pos, Block>,
    /// Free bytes per trunk file (store path, id): the allocator prefers the fullest file.
    free_per_file: HashMap<(u8, u32), u64>,
    /// Trunk files taken out of use (`delete_unused_trunk_files`): no space in them is free.
    retired: HashSet<(u8, u32)>,
    /// Trunk files a free made free from their start (perhaps whole): candidates to retire.
    /// Files created empty (ahead of need, `trunk_create_file_advance`) are not among them.
    emptied: HashSet<(u8, u32)>,
    /// The highest trunk file id in use (`current_trunk_file_id`).
    current_trunk_id: u32,
}

/// How many of the smallest free blocks that fit the allocator weighs against each other.
const ALLOC_CANDIDATES: usize = 32;

impl FreeSpace {
    pub fn new(settings: TrunkSettings, current_trunk_id: u32) -> Self {
        Self { settings, current_trunk_id, ..Default::default() }
    }

    pub fn settings(&self) -> TrunkSettings {
        self.settings
    }

    pub fn set_settings(&mut self, settings: TrunkSettings) {
        self.settings = settings;
    }

    pub fn current_trunk_id(&self) -> u32 {
        self.current_trunk_id
    }

    /// Raises the trunk id counter (the tracker's FETCH_TRUNK_FID answer, `.data_init_flag`).
    pub fn raise_trunk_id(&mut self, id: u32) {
        self.current_trunk_id = self.current_trunk_id.max(id);
    }

    /// The binlog that describes the map as it stands: every free block and every held slot
    /// as an `A` line (a held slot's confirmation, a `D`, comes later), by position.
    pub fn compacted(&self, now: i64) -> Vec<SpaceRecord> {
        let mut blocks: Vec<Block> = self.by_pos.values().chain(self.held.values()).copied().collect();
        blocks.sort_by_key(|b| b.key());
        blocks.into_iter().map(|block| SpaceRecord { timestamp: now, op: SpaceOp::Add, block }).collect()
    }

    /// Slots handed out and not yet confirmed or released.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Free bytes in all trunk files.
    pub fn free_bytes(&self) -> u64 {
        self.by_pos.values().map(|b| b.size as u64).sum()
    }

    /// The free blocks, by position.
    pub fn free_blocks(&self) -> impl Iterator<Item = &Block> {
        self.by_pos.values()
    }

    /// Replays one binlog line. Lines that do not fit what is known (a `D` of a block that is
    /// not free, an `A` over free space) are skipped and counted by the caller.
    pub fn replay(&mut self, r: &SpaceRecord) -> bool {
        self.current_trunk_id = self.current_trunk_id.max(r.block.trunk_id);
        match r.op {
            SpaceOp::Add => self.insert(r.block),
            SpaceOp::Delete => self.remove(&r.block),
        }
    }

    fn overlaps_free(&self, b: &Block) -> bool {
        let below = self.by_pos.range(..=b.key()).next_back().map(|(_, p)| *p);
        let above = self.by_pos.range(b.key()..).next().map(|(_, n)| *n);
        let same_file = |o: &Block| o.path == b.path && o.trunk_id == b.trunk_id;
        below.is_some_and(|p| same_file(&p) && p.end() > b.offset as u64)
            || above.is_some_and(|n| same_file(&n) && (n.offset as u64) < b.end())
    }

    fn insert(&mut self, b: Block) -> bool {
        if b.size == 0 || self.overlaps_free(&b) || self.retired.contains(&(b.path, b.trunk_id)) {
            return false;
        }
        self.by_pos.insert(b.key(), b);
        self.by_size.insert((b.path, b.size, b.key()));
        *self.free_per_file.entry((b.path, b.trunk_id)).or_default() += b.size as u64;
        true
    }

    fn remove(&mut self, b: &Block) -> bool {
        match self.by_pos.get(&b.key()) {
            Some(f) if f == b => {
                self.by_pos.remove(&b.key());
                self.by_size.remove(&(b.path, b.size, b.key()));
                let file = (b.path, b.trunk_id);
                if let Some(free) = self.free_per_file.get_mut(&file) {
                    *free -= b.size as u64;
                    if *free == 0 {
                        self.free_per_file.remove(&file);
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn file_free(&self, path: u8, trunk_id: u32) -> u64 {
        self.free_per_file.get(&(path, trunk_id)).copied().unwrap_or(0)
    }

    /// The trunk files that frees have left with free space at their start since the last
    /// call, each as one block from its start over all its free bytes: those as long as their
    /// file are trunk files no slot of which is in use or handed out, merged or not (the caller
    /// compares with the file's length).
    pub fn take_emptied(&mut self) -> Vec<Block> {
        let emptied = std::mem::take(&mut self.emptied);
        emptied
            .into_iter()
            .filter_map(|(path, id)| {
                let first = self.by_pos.get(&(path, id, 0))?;
                Some(Block { size: u32::try_from(self.file_free(path, id)).ok()?, ..*first })
            })
            .collect()
    }

    /// Every trunk file with free space at its start counts as emptied (after a restart: one
    /// emptied just before it is not lost).
    pub fn all_emptied(&mut self) {
        self.emptied.extend(self.by_pos.values().filter(|b| b.offset == 0).map(|b| (b.path, b.trunk_id)));
    }

    /// Is `b` (from [`Self::take_emptied`]) still all the free space of its file?
    pub fn is_all_free(&self, b: &Block) -> bool {
        b.offset == 0
            && self.by_pos.get(&b.key()).is_some_and(|f| (f.high, f.low) == (b.high, b.low))
            && self.file_free(b.path, b.trunk_id) == b.size as u64
    }

    /// Takes trunk file (`path`, `trunk_id`) out of use for good (`delete_unused_trunk_files`):
    /// its free blocks are removed (the returned `D` lines), and no space in it is free again,
    /// whatever a later line or a late free says. Trunk ids are never reused, so a retired file
    /// only ever holds files written before it was retired.
    pub fn retire(&mut self, path: u8, trunk_id: u32, now: i64) -> Vec<SpaceRecord> {
        self.retired.insert((path, trunk_id));
        let blocks: Vec<Block> =
            self.by_pos.range((path, trunk_id, 0)..=(path, trunk_id, u32::MAX)).map(|(_, b)| *b).collect();
        blocks
            .into_iter()
            .filter(|b| self.remove(b))
            .map(|block| SpaceRecord { timestamp: now, op: SpaceOp::Delete, block })
            .collect()
    }

    pub fn is_retired(&self, path: u8, trunk_id: u32) -> bool {
        self.retired.contains(&(path, trunk_id))
    }

    /// A slot for `content_len` bytes in store path `path`, split off the front of a free block
    /// when what is left could hold a slot; `None` if such a file is not put in a trunk.
    ///
    /// Of the smallest blocks that fit, the one in the fullest trunk file is taken (then the
    /// smallest): space freed in a file that is emptying is left alone, so that the file
    /// empties and, with `delete_unused_trunk_files`, goes.
    pub fn alloc(&mut self, path: u8, content_len: u64, now: i64) -> Option<Alloc> {
        let size = self.settings.slot_size(content_len)?;
        let found = self
            .by_size
            .range((path, size, (0, 0, 0))..=(path, u32::MAX, (u8::MAX, u32::MAX, u32::MAX)))
            .take(ALLOC_CANDIDATES)
            .min_by_key(|&&(_, size, pos)| (self.file_free(pos.0, pos.1), size, pos));
        let Some(&(_, _, pos)) = found else {
            return Some(Alloc::NewTrunkFile { trunk_id: self.current_trunk_id + 1 });
        };
        let block = self.by_pos[&pos];
        self.remove(&block);
        let rec = |op, block| SpaceRecord { timestamp: now, op, block };
        let mut lines = vec![rec(SpaceOp::Delete, block)];
        let mut slot = block;
        if block.size - size >= self.settings.slot_min_size.max(1) {
            let rest = Block { offset: block.offset + size, size: block.size - size, ..block };
            self.insert(rest);
            lines.push(rec(SpaceOp::Add, rest));
            slot.size = size;
        }
        lines.push(rec(SpaceOp::Add, slot));
        self.held.insert(slot.key(), slot);
        Some(Alloc::Slot(slot, lines))
    }

    /// A new trunk file of `trunk_file_size` bytes exists: all of it is free. Returns its line.
    pub fn add_trunk_file(&mut self, path: u8, high: u8, low: u8, trunk_id: u32, now: i64) -> SpaceRecord {
        self.current_trunk_id = self.current_trunk_id.max(trunk_id);
        let block = Block { path, high, low, trunk_id, offset: 0, size: self.settings.trunk_file_size };
        self.insert(block);
        SpaceRecord { timestamp: now, op: SpaceOp::Add, block }
    }

    /// The held slot's file is written: the slot is in use. Returns the confirming line, or
    /// `None` if the slot was not held (a confirmation for a slot someone else decided on).
    pub fn confirm(&mut self, slot: &Block, now: i64) -> Option<SpaceRecord> {
        match self.held.get(&slot.key()) {
            Some(h) if h == slot => {
                self.held.remove(&slot.key());
                Some(SpaceRecord { timestamp: now, op: SpaceOp::Delete, block: *slot })
            }
            _ => None,
        }
    }

    /// The held slot's write failed: it is free again. Its `A` line is already in the binlog,
    /// so nothing is written. `false` if the slot was not held.
    pub fn release(&mut self, slot: &Block) -> bool {
        if self.held.get(&slot.key()) != Some(slot) {
            return false;
        }
        self.held.remove(&slot.key());
        self.insert(*slot)
    }

    /// `range` holds a file although the map says free (a slot found occupied before it was
    /// handed out): every free byte of it is taken out. Returns the lines.
    pub fn occupy(&mut self, range: &Block, now: i64) -> Vec<SpaceRecord> {
        let rec = |op, block| SpaceRecord { timestamp: now, op, block };
        let start = self.by_pos.range(..=range.key()).next_back().map_or(range.key(), |(k, _)| *k);
        let overlapping: Vec<Block> = self
            .by_pos
            .range(start..)
            .map(|(_, b)| *b)
            .take_while(|b| b.path == range.path && b.trunk_id == range.trunk_id && (b.offset as u64) < range.end())
            .filter(|b| b.end() > range.offset as u64)
            .collect();
        let mut lines = Vec::new();
        for b in overlapping {
            self.remove(&b);
            lines.push(rec(SpaceOp::Delete, b));
            if b.offset < range.offset {
                let left = Block { size: range.offset - b.offset, ..b };
                self.insert(left);
                lines.push(rec(SpaceOp::Add, left));
            }
            if b.end() > range.end() {
                let right = Block { offset: range.end() as u32, size: (b.end() - range.end()) as u32, ..b };
                self.insert(right);
                lines.push(rec(SpaceOp::Add, right));
            }
        }
        lines
    }

    /// A slot in use is freed (its file deleted), joined with free neighbours in the same trunk
    /// file when merging is on. Returns the lines, empty when the slot overlaps free or held
    /// space (freed twice, or never allocated).
    pub fn free(&mut self, slot: &Block, now: i64) -> Vec<SpaceRecord> {
        if slot.size == 0
            || self.overlaps_free(slot)
            || self.held.contains_key(&slot.key())
            || self.is_retired(slot.path, slot.trunk_id)
        {
            return Vec::new();
        }
        let rec = |op, block| SpaceRecord { timestamp: now, op, block };
        let mut lines = Vec::new();
        let mut merged = *slot;
        if self.settings.merge {
            let before = self.by_pos.range(..slot.key()).next_back().map(|(_, b)| *b);
            if let Some(b) =
                before.filter(|b| b.path == slot.path && b.trunk_id == slot.trunk_id && b.end() == slot.offset as u64)
            {
                self.remove(&b);
                lines.push(rec(SpaceOp::Delete, b));
                merged.offset = b.offset;
                merged.size += b.size;
            }
            let after =
                u32::try_from(slot.end()).ok().and_then(|end| self.by_pos.get(&(slot.path, slot.trunk_id, end)));
            if let Some(a) = after.copied() {
                self.remove(&a);
                lines.push(rec(SpaceOp::Delete, a));
                merged.size += a.size;
            }
        }
        self.insert(merged);
        if self.by_pos.contains_key(&(merged.path, merged.trunk_id, 0)) {
            self.emptied.insert((merged.path, merged.trunk_id));
        }
        lines.push(rec(SpaceOp::Add, merged));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TrunkSettings {
        TrunkSettings {
            slot_min_size: 256,
            slot_max_size: 1 << 20,
            alignment: 256,
            trunk_file_size: 4 << 20,
            merge: true,
        }
    }

    fn replayed(text: &str, s: TrunkSettings) -> FreeSpace {
        let mut f = FreeSpace::new(s, 0);
        for line in text.lines() {
            f.replay(&SpaceRecord::parse(line).expect(line));
        }
        f
    }

    #[test]
    fn slot_sizes_are_cs() {
        let s = settings();
        // Captured: 27 B → 256, 4096 B → 4352, 1 048 552 B → 1 MiB, 1 048 553 B → no trunk.
        assert_eq!(s.slot_size(27), Some(256));
        assert_eq!(s.slot_size(0), Some(256));
        assert_eq!(s.slot_size(4096), Some(4352));
        assert_eq!(s.slot_size(1_048_552), Some(1 << 20));
        assert_eq!(s.slot_size(1_048_553), None);
    }

    #[test]
    fn lines_round_trip() {
        let l = "1795800553 A 0 0 0 1 256 4194048\n";
        let r = SpaceRecord::parse(l).unwrap();
        assert_eq!(r.block, Block { path: 0, high: 0, low: 0, trunk_id: 1, offset: 256, size: 4194048 });
        assert_eq!(r.line(), l);
        for bad in
            ["", "1 X 0 0 0 1 0 256", "1 A 0 0 0 1 0", "1 A 0 0 0 1 0 0", "1 A 300 0 0 1 0 256", "1 A 0 0 0 1 0 256 9"]
        {
            assert_eq!(SpaceRecord::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allocations_write_the_lines_c_writes_and_replay_to_the_same_map() {
        // The first allocations of the C fixture's trunk binlog, made again.
        let mut f = FreeSpace::new(settings(), 0);
        assert_eq!(f.alloc(0, 27, 1), Some(Alloc::NewTrunkFile { trunk_id: 1 }));
        let mut log = vec![f.add_trunk_file(0, 0, 0, 1, 1795800553)];
        let Some(Alloc::Slot(a, lines)) = f.alloc(0, 27, 1795800553) else { panic!() };
        log.extend(lines);
        log.extend(f.confirm(&a, 1795800553));
        let Some(Alloc::Slot(b, lines)) = f.alloc(0, 4096, 1795800553) else { panic!() };
        log.extend(lines);
        log.extend(f.confirm(&b, 1795800553));
        let text: String = log.iter().map(SpaceRecord::line).collect();
        let c = "1795800553 A 0 0 0 1 0 4194304
1795800553 D 0 0 0 1 0 4194304
1795800553 A 0 0 0 1 256 4194048
1795800553 A 0 0 0 1 0 256
1795800553 D 0 0 0 1 0 256
1795800553 D 0 0 0 1 256 4194048
1795800553 A 0 0 0 1 4608 4189696
1795800553 A 0 0 0 1 256 4352
1795800553 D 0 0 0 1 256 4352
";
        assert_eq!(text, c);
        let back = replayed(&text, settings());
        assert_eq!(back.free_blocks().collect::<Vec<_>>(), f.free_blocks().collect::<Vec<_>>());
        assert_eq!(back.current_trunk_id(), 1);
    }

    #[test]
    fn an_unconfirmed_slot_is_free_after_replay_and_a_released_one_at_once() {
        let mut f = FreeSpace::new(settings(), 0);
        let mut log = vec![f.add_trunk_file(0, 0, 0, 1, 1)];
        let Some(Alloc::Slot(a, lines)) = f.alloc(0, 100, 1) else { panic!() };
        log.extend(lines);
        let back = replayed(&log.iter().map(SpaceRecord::line).collect::<String>(), settings());
        assert_eq!(back.free_bytes(), 4 << 20, "never confirmed: free again after a restart");
        f.release(&a);
        assert_eq!(f.free_bytes(), 4 << 20);
        let Some(Alloc::Slot(again, _)) = f.alloc(0, 100, 1) else { panic!() };
        assert_eq!(again, a, "the smallest block that fits is taken first");
    }

    #[test]
    fn freed_slots_are_reused_and_merged_with_their_neighbours() {
        let mut f = FreeSpace::new(settings(), 0);
        f.add_trunk_file(0, 0, 0, 1, 1);
        let mut slots = Vec::new();
        for _ in 0..3 {
            let Some(Alloc::Slot(s, _)) = f.alloc(0, 1000, 1) else { panic!() };
            assert!(f.confirm(&s, 1).is_some());
            slots.push(s);
        }
        assert_eq!(slots.iter().map(|s| s.offset).collect::<Vec<_>>(), [0, 1024, 2048]);
        assert_eq!(f.free(&slots[0], 2).len(), 1);
        assert!(f.free(&slots[0], 2).is_empty(), "freed twice");
        let Some(Alloc::Slot(reuse, _)) = f.alloc(0, 10, 3) else { panic!() };
        assert_eq!((reuse.offset, reuse.size), (0, 256), "the freed slot is split for a small file");
        f.confirm(&reuse, 3);
        // Freeing the middle slot joins it with the tail: D tail, A merged.
        let lines = f.free(&slots[2], 4);
        assert_eq!(lines.iter().map(|l| l.op).collect::<Vec<_>>(), [SpaceOp::Delete, SpaceOp::Add]);
        assert_eq!((lines[1].block.offset, lines[1].block.size), (2048, (4 << 20) - 2048));
        let lines = f.free(&slots[1], 5);
        assert_eq!(lines.len(), 3, "joined with the free piece before and the free tail after");
        assert_eq!((lines[2].block.offset, lines[2].block.size), (256, (4 << 20) - 256));
        assert_eq!(f.free(&Block { offset: 512, size: 256, ..slots[1] }, 6), vec![], "inside free space");
    }

    #[test]
    fn occupied_space_is_taken_out_of_the_free_blocks() {
        let mut f = FreeSpace::new(settings(), 0);
        f.add_trunk_file(0, 0, 0, 1, 1);
        let Some(Alloc::Slot(s, _)) = f.alloc(0, 100, 1) else { panic!() };
        assert!(f.release(&s));
        // A file of 1000 bytes sits at 256 (written by a trunk server whose lines we lack).
        let lines = f.occupy(&Block { offset: 200, size: 1024, ..s }, 2);
        let ops: Vec<(SpaceOp, u32, u32)> = lines.iter().map(|l| (l.op, l.block.offset, l.block.size)).collect();
        assert_eq!(
            ops,
            [
                (SpaceOp::Delete, 0, 256),
                (SpaceOp::Add, 0, 200),
                (SpaceOp::Delete, 256, (4 << 20) - 256),
                (SpaceOp::Add, 1224, (4 << 20) - 1224)
            ]
        );
        let free: Vec<(u32, u32)> = f.free_blocks().map(|b| (b.offset, b.size)).collect();
        assert_eq!(free, [(0, 200), (1224, (4 << 20) - 1224)]);
    }

    #[test]
    fn a_compacted_binlog_replays_to_the_same_map() {
        let mut f = FreeSpace::new(settings(), 0);
        let mut log = vec![f.add_trunk_file(0, 0, 0, 1, 1)];
        let mut slots = Vec::new();
        for i in 0..20 {
            let Some(Alloc::Slot(s, lines)) = f.alloc(0, 300 * i, 1) else { panic!() };
            log.extend(lines);
            log.extend(f.confirm(&s, 1));
            slots.push(s);
        }
        for s in slots.iter().step_by(3) {
            log.extend(f.free(s, 2));
        }
        let Some(Alloc::Slot(held, lines)) = f.alloc(0, 10, 3) else { panic!() };
        log.extend(lines);
        let compact = f.compacted(4);
        assert!(compact.len() < log.len() / 3, "{} lines for {}", compact.len(), log.len());
        let mut back = FreeSpace::new(settings(), 0);
        for r in &compact {
            assert!(back.replay(r));
        }
        // The held slot is free after a replay (never confirmed), as it is from the full log.
        let mut full = FreeSpace::new(settings(), 0);
        for r in &log {
            full.replay(r);
        }
        assert_eq!(back.free_blocks().collect::<Vec<_>>(), full.free_blocks().collect::<Vec<_>>());
        // Its confirmation, written after the compaction, still applies.
        let confirm = f.confirm(&held, 5).unwrap();
        assert!(back.replay(&confirm));
    }

    #[test]
    fn a_full_trunk_file_asks_for_the_next() {
        let mut f = FreeSpace::new(TrunkSettings { trunk_file_size: 4 << 20, ..settings() }, 7);
        f.add_trunk_file(0, 0, 0, 8, 1);
        for _ in 0..4 {
            let Some(Alloc::Slot(s, _)) = f.alloc(0, (1 << 20) - 24, 1) else { panic!() };
            f.confirm(&s, 1);
        }
        assert_eq!(f.alloc(0, 1, 1), Some(Alloc::NewTrunkFile { trunk_id: 9 }));
        assert_eq!(f.alloc(1, 1, 1), Some(Alloc::NewTrunkFile { trunk_id: 9 }), "store paths have their own files");
        assert_eq!(f.alloc(0, 2 << 20, 1), None, "too big for a trunk");
    }

    #[test]
    fn the_fullest_trunk_file_is_filled_first_so_an_emptying_one_empties() {
        let mut f = FreeSpace::new(settings(), 0);
        f.add_trunk_file(0, 0, 0, 1, 1);
        // File 1: ten 64 KiB slots; then file 2 gets the rest of the uploads.
        let mut one = Vec::new();
        for _ in 0..10 {
            let Some(Alloc::Slot(s, _)) = f.alloc(0, (64 << 10) - 24, 1) else { panic!() };
            f.confirm(&s, 1);
            one.push(s);
        }
        f.add_trunk_file(0, 0, 1, 2, 1);
        let tail = f.occupy(&Block { path: 0, high: 0, low: 1, trunk_id: 2, offset: 0, size: 3 << 20 }, 1);
        assert_eq!(tail.len(), 2);
        // Nine of file 1's slots are freed: 576 KiB free there, but file 1 is the emptier one.
        for s in &one[..9] {
            f.free(s, 2);
        }
        let Some(Alloc::Slot(s, _)) = f.alloc(0, 1000, 3) else { panic!() };
        assert_eq!(s.trunk_id, 2, "the fuller file takes the slot though file 1 has a smaller hole");
        f.confirm(&s, 3);
        // Emptied completely, file 1 is one free block from its start: ready to go.
        f.take_emptied();
        f.free(&one[9], 4);
        let whole: Vec<Block> = f.take_emptied().into_iter().filter(|b| b.size == 4 << 20).collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].trunk_id, 1);
        assert!(f.is_all_free(&whole[0]));
        assert!(f.take_emptied().is_empty(), "taken");
        // A file made empty (ahead of need) is not a candidate until a restart says so.
        f.add_trunk_file(0, 0, 2, 3, 5);
        assert!(f.take_emptied().is_empty());
        f.all_emptied();
        assert_eq!(f.take_emptied().iter().map(|b| b.trunk_id).collect::<BTreeSet<_>>(), BTreeSet::from([1, 3]));
    }

    #[test]
    fn a_trunk_file_emptied_without_merging_is_found_all_free() {
        let mut f = FreeSpace::new(TrunkSettings { merge: false, ..settings() }, 0);
        f.add_trunk_file(0, 0, 0, 1, 1);
        let mut slots = Vec::new();
        for _ in 0..3 {
            let Some(Alloc::Slot(s, _)) = f.alloc(0, 1000, 1) else { panic!() };
            f.confirm(&s, 1);
            slots.push(s);
        }
        f.free(&slots[0], 2);
        f.free(&slots[2], 2);
        let partly = f.take_emptied();
        assert_eq!(partly.len(), 1);
        assert!(partly[0].size < 4 << 20, "slot 1 is in use");
        f.free(&slots[1], 3);
        let all = f.take_emptied();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].offset, all[0].size), (0, 4 << 20), "three slots and the tail, not merged");
        assert!(f.is_all_free(&all[0]));
        assert_eq!(f.retire(0, 1, 4).len(), 4, "every free block of it goes");
        assert_eq!(f.free_bytes(), 0);
    }

    #[test]
    fn a_retired_trunk_file_never_has_free_space_again() {
        let mut f = FreeSpace::new(settings(), 0);
        f.add_trunk_file(0, 0, 0, 1, 1);
        let Some(Alloc::Slot(held, _)) = f.alloc(0, 100, 1) else { panic!() };
        let lines = f.retire(0, 1, 2);
        assert_eq!(lines.len(), 1, "the free rest of the file is taken out");
        assert_eq!(lines[0].op, SpaceOp::Delete);
        assert_eq!(f.free_bytes(), 0);
        assert!(!f.release(&held), "a slot handed out before does not come back");
        assert!(f.free(&held, 3).is_empty(), "nor a late free");
        assert!(!f.replay(&SpaceRecord { timestamp: 4, op: SpaceOp::Add, block: lines[0].block }));
        assert_eq!(f.alloc(0, 100, 5), Some(Alloc::NewTrunkFile { trunk_id: 2 }));
        assert!(f.is_retired(0, 1) && !f.is_retired(0, 2));
    }
}
