//! Fresh names for new files: generated from the content's size, CRC32 and time, and retried
//! (as FastDFS does) until one is not taken on disk.

use crate::file_id::{self, NameKind, NewName, RemoteFilename, Source};
use crate::protocol::Status;
use crate::storage::paths::StorePaths;
use std::path::{Path, PathBuf};

use super::io;

/// Tries at a unique name before giving up (as FastDFS does).
const NAME_TRIES: usize = 10;

/// A name generator for [`under_fresh_name`].
pub(super) type NameFor = Box<dyn FnMut(&mut fastrand::Rng) -> RemoteFilename + Send>;

/// New names for content of `(size, crc32)` stored at `ts` in store path `at.0`, directory
/// `at.1/at.2` (one directory for every try, as C).
pub(super) fn fresh_names(
    source: Source,
    ts: i64,
    (size, crc32): (u64, u32),
    kind: NameKind,
    ext: String,
    (index, high, low): (usize, u8, u8),
) -> NameFor {
    Box::new(move |rng: &mut fastrand::Rng| {
        let new = NewName {
            source,
            timestamp: ts as u32,
            size,
            crc32,
            kind,
            ext: &ext,
            store_path_index: index as u8,
            high,
            low,
        };
        file_id::generate(&new, rng)
    })
}

/// Tries fresh names (up to [`NAME_TRIES`], as FastDFS does) until `place` puts the file under
/// one that was free; returns that name and its path.
pub(super) fn under_fresh_name(
    paths: &StorePaths,
    mut name_for: impl FnMut(&mut fastrand::Rng) -> RemoteFilename,
    mut place: impl FnMut(&Path) -> std::io::Result<()>,
) -> Result<(RemoteFilename, PathBuf), Status> {
    let mut rng = fastrand::Rng::new();
    for _ in 0..NAME_TRIES {
        let name = name_for(&mut rng);
        let dest = paths.local_path(&name).ok_or(Status::EINVAL)?;
        match place(&dest) {
            Ok(()) => return Ok((name, dest)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e)),
        }
    }
    Err(Status::EEXIST)
}
