//! The trunk server's allocator: slots handed out from the free space, confirmed, freed, and
//! trunk files made as they are needed. It works on narrow handles (the trunk state, the store
//! paths its files are in, the tracker's slot settings, and where the highest trunk id is kept),
//! not on the whole server.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Trunk, MAX_HELD, NEW_FILE_TRIES};
use crate::protocol::Status;
use crate::storage::answer::io;
use crate::storage::paths::StorePaths;
use crate::storage::StorageServer;
use crate::timefmt::now_unix;
use crate::trunk::space::{Alloc, Block, FreeSpace, TrunkSettings};
use crate::trunk::SLOT_HEADER_LEN;

/// The trunk allocator of a storage that is its group's trunk server.
pub(in crate::storage) struct Allocator<'a, R> {
    trunk: &'a Trunk,
    paths: &'a StorePaths,
    settings: TrunkSettings,
    /// Records a trunk id as used (`.data_init_flag`'s `current_trunk_file_id`) before its file
    /// is made, as C does, so the id is never handed out again.
    record_id: R,
}

impl StorageServer {
    /// The trunk allocator over this storage's store paths, with the tracker's slot settings.
    pub(in crate::storage) fn allocator(&self) -> Allocator<'_, impl Fn(u32) -> std::io::Result<()> + '_> {
        let record_id =
            move |id: u32| self.update_init_flag(|f| f.current_trunk_file_id = f.current_trunk_file_id.max(id));
        Allocator { trunk: &self.trunk, paths: &self.paths, settings: self.identity.params().trunk, record_id }
    }

    pub(in crate::storage) fn trunk_file_path(&self, b: &Block) -> Option<PathBuf> {
        trunk_file_path(&self.paths, b)
    }

    /// The trunk ids and free megabytes to report (73/74), when this storage is the trunk server.
    pub fn trunk_report(&self) -> Option<(u32, i64)> {
        self.trunk.report()
    }
}

/// The trunk file a block is in (`<store path>/data/HH/LL/NNNNNN`).
fn trunk_file_path(paths: &StorePaths, b: &Block) -> Option<PathBuf> {
    let root = &paths.paths.get(b.path as usize)?.root;
    Some(root.join(format!("data/{:02X}/{:02X}/{:06}", b.high, b.low, b.trunk_id)))
}

impl<R: Fn(u32) -> std::io::Result<()>> Allocator<'_, R> {
    /// A slot for `content_len` bytes in store path `path`, as the trunk server (blocking: a
    /// new trunk file may have to be created). `None`: no slot from here, because none fits, or
    /// because this storage does not hold the role (not named, or named and still rebuilding
    /// its free space from the trunk binlog): a local upload is then a regular file, a member
    /// is answered EINVAL.
    pub(in crate::storage) fn alloc(&self, path: u8, content_len: u64) -> Result<Option<Block>, Status> {
        let now = now_unix();
        let settings = self.settings;
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Ok(None) };
        // A held slot is released when its writer says so, or when the trunk server restarts
        // (the binlog calls it free): a member that asks and never confirms must not hold
        // trunk space without bound.
        if space.held() >= MAX_HELD {
            tracing::warn!("{MAX_HELD} trunk slots handed out and not confirmed; refusing more until some are");
            return Err(Status::EBUSY);
        }
        space.set_settings(settings);
        for _ in 0..NEW_FILE_TRIES {
            match space.alloc(path, content_len, now) {
                None => return Ok(None),
                Some(Alloc::Slot(slot, mut lines)) => {
                    // The map may lag behind the trunk files (lines of a trunk server that died
                    // before pushing them): a slot that holds a file is never handed out.
                    let occupied = self.occupant(&slot);
                    if let Some(range) = occupied {
                        tracing::warn!("trunk slot {slot:?} holds a file the trunk binlog says is free; kept");
                        space.release(&slot);
                        lines.extend(space.occupy(&range, now));
                    }
                    if let Err(e) = self.trunk.log.append(&lines) {
                        space.release(&slot);
                        return Err(io(e));
                    }
                    self.trunk.news.notify_waiters();
                    if occupied.is_none() {
                        return Ok(Some(slot));
                    }
                }
                Some(Alloc::NewTrunkFile { trunk_id }) => {
                    if self.new_trunk_file(space, path, trunk_id, now)? {
                        tracing::info!("trunk file {trunk_id} created in store path {path}");
                    }
                }
            }
        }
        Err(Status::ENOSPC)
    }

    /// The space a file found at the start of `slot` takes, if one is there: a slot header
    /// that could be C's or ours (type, sizes, time and extension all plausible).
    fn occupant(&self, slot: &Block) -> Option<Block> {
        let f = File::open(trunk_file_path(self.paths, slot)?).ok()?;
        let mut h = [0u8; SLOT_HEADER_LEN as usize];
        f.read_exact_at(&mut h, slot.offset as u64).ok()?;
        let alloc = crate::trunk::plausible_header(&h, slot.offset as u64, f.metadata().ok()?.len(), now_unix())?;
        Some(Block { size: alloc, ..*slot })
    }

    /// `trunk_create_file_advance`: trunk files are created, one store path after another,
    /// until `threshold` bytes of trunk space are free. Returns how many.
    pub(in crate::storage) fn create_ahead(&self, threshold: u64) -> Result<usize, Status> {
        let now = now_unix();
        let settings = self.settings;
        let mut guard = self.trunk.space();
        let Some(space) = guard.as_mut() else { return Ok(0) };
        space.set_settings(settings);
        let mut created = 0;
        let limit = (threshold / settings.trunk_file_size.max(1) as u64 + 1).min(4096) as usize;
        for _ in 0..limit + NEW_FILE_TRIES as usize {
            if space.free_bytes() >= threshold {
                break;
            }
            let path = (created % self.paths.paths.len()) as u8;
            let trunk_id = space.current_trunk_id() + 1;
            created += usize::from(self.new_trunk_file(space, path, trunk_id, now)?);
        }
        self.trunk.log.sync_if_dirty().map_err(io)?;
        self.trunk.news.notify_waiters();
        Ok(created)
    }

    /// Trunk file `trunk_id` in store path `path`, in the next directory, at its full size (C
    /// creates it so), made durable with its entry, and all of it free space (its `A` line
    /// appended). The id is recorded first, as C does, so it is never reused. `false` if a file
    /// of that id is there already (the counter is raised past it).
    fn new_trunk_file(&self, space: &mut FreeSpace, path: u8, trunk_id: u32, now: i64) -> Result<bool, Status> {
        let (high, low) = self.paths.next_dir(&mut fastrand::Rng::new());
        let block = Block { path, high, low, trunk_id, offset: 0, size: space.settings().trunk_file_size };
        let file = trunk_file_path(self.paths, &block).ok_or(Status::EINVAL)?;
        (self.record_id)(trunk_id).map_err(io)?;
        let created = OpenOptions::new().write(true).create_new(true).open(&file).and_then(|f| {
            f.set_len(block.size as u64)?;
            f.sync_all()?;
            crate::durable::sync_dir(file.parent().unwrap_or(Path::new(".")))
        });
        match created {
            Ok(()) => {
                let line = space.add_trunk_file(path, high, low, trunk_id, now);
                self.trunk.log.append(&[line]).map_err(io)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                space.raise_trunk_id(trunk_id);
                Ok(false)
            }
            Err(e) => Err(io(e)),
        }
    }
}

impl Trunk {
    /// The held slot is written: it is in use. The line is synced by the writer's round (local
    /// uploads) or before the answer (28 from a member).
    pub(in crate::storage) fn confirm(&self, slot: &Block) -> Result<(), Status> {
        let mut guard = self.space();
        let Some(space) = guard.as_mut() else { return Err(Status::EINVAL) };
        let Some(line) = space.confirm(slot, now_unix()) else { return Err(Status::ENOENT) };
        if let Err(e) = self.log.append(&[line]) {
            space.release(slot);
            return Err(io(e));
        }
        self.news.notify_waiters();
        Ok(())
    }

    /// A slot is free again: a held one whose write failed, or one whose file was deleted.
    pub(in crate::storage) fn free(&self, slot: &Block) -> Result<(), Status> {
        let mut guard = self.space();
        let Some(space) = guard.as_mut() else { return Err(Status::EINVAL) };
        if space.release(slot) {
            return Ok(());
        }
        let lines = space.free(slot, now_unix());
        self.log.append(&lines).map_err(io)?;
        self.news.notify_waiters();
        Ok(())
    }

    /// The trunk ids and free megabytes to report (73/74), when this storage is the trunk server.
    pub fn report(&self) -> Option<(u32, i64)> {
        let space = self.space();
        space.as_ref().map(|s| (s.current_trunk_id(), (s.free_bytes() >> 20) as i64))
    }
}
