//! The storage's side of [`crate::trunk::live`]: one index per store path of the trunk slots
//! that hold a live file, kept from the binlog. Every record the binlog takes for a trunk name
//! updates it (creates and links add, deletes remove), so the index is whatever the binlog
//! says, and readers (downloads, the nginx module) read a slot only when it is there. Rebuilt
//! from the whole binlog when it was not closed cleanly.

use std::sync::Mutex;

use super::binlog::{BinlogReader, Line, Op, Record};
use super::paths::StorePaths;
use crate::file_id::RemoteFilename;
use crate::locked::MutexExt;
use crate::trunk::live::LiveSlots;

#[derive(Debug)]
pub struct LiveIndex {
    /// Each store path's root and index.
    paths: Vec<(std::path::PathBuf, Mutex<LiveSlots>)>,
}

impl LiveIndex {
    /// Opens every store path's index; those not closed cleanly are rebuilt from the binlog in
    /// `binlog_dir` up to `writing`.
    pub fn open(paths: &StorePaths, binlog_dir: &std::path::Path, writing: (u32, u64)) -> std::io::Result<Self> {
        let mut stale = false;
        let mut opened = Vec::new();
        for p in &paths.paths {
            let (slots, clean) = LiveSlots::open(&p.root)?;
            stale |= !clean;
            opened.push((p.root.clone(), Mutex::new(slots)));
        }
        let index = LiveIndex { paths: opened };
        if stale {
            let started = std::time::Instant::now();
            let mut reader = BinlogReader::at(binlog_dir, 0, 0);
            let mut n = 0usize;
            while let Some(line) = reader.next(writing)? {
                if let Line::Record(r) = line {
                    n += usize::from(index.apply_one(&r)?);
                }
            }
            tracing::info!("trunk slot index rebuilt from the binlog: {n} record(s) in {:?}", started.elapsed());
        }
        Ok(index)
    }

    /// What a committed record changes: `true` when it named a trunk file.
    fn apply_one(&self, r: &Record) -> std::io::Result<bool> {
        let Ok(name) = RemoteFilename::parse(&r.filename, Some(self.paths.len())) else { return Ok(false) };
        if !crate::trunk::is_trunk_name(&name) {
            return Ok(false);
        }
        let Some((root, slots)) = self.paths.get(name.store_path_index as usize) else { return Ok(false) };
        match r.op {
            // Only a name its slot holds: a 60-character slave name looks like a trunk name
            // (C's readers take it for one) but is a regular file, and must not take the
            // place of its master's slot; nor does a name whose slot was reused since.
            Op::Create | Op::Link | Op::Update => {
                if crate::trunk::open(&name, root)?.is_some() {
                    slots.locked().insert(&name)?;
                }
            }
            Op::Delete => slots.locked().remove(&name)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// After a batch of records is committed to the binlog.
    pub fn apply(&self, records: &[Record]) {
        for r in records {
            if let Err(e) = self.apply_one(r) {
                tracing::error!(
                    "trunk slot index: {} {}: {e}; the file is not served until a restart",
                    r.op.letter(r.replica),
                    r.filename
                );
            }
        }
    }

    /// A slot written without a record here (disk recovery copies files its member recorded).
    pub fn insert(&self, name: &RemoteFilename) -> std::io::Result<()> {
        match self.paths.get(name.store_path_index as usize) {
            Some((_, slots)) => slots.locked().insert(name),
            None => Ok(()),
        }
    }

    /// At a clean stop: the next start trusts the indexes as they are.
    pub fn close(&self) -> std::io::Result<()> {
        for (_, slots) in &self.paths {
            slots.locked().close()?;
        }
        Ok(())
    }
}

impl super::binlog::Committed for LiveIndex {
    fn committed(&self, records: &[Record]) {
        self.apply(records);
    }
}
