//! Per-file async locks (append/modify/truncate/regenerate of one appender file, replicated
//! ranges). An entry lives only while someone holds or waits for it, so the table stays as
//! small as the number of files being changed right now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::locked::MutexExt;

type Slot = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, Default)]
pub struct FileLocks {
    table: Mutex<HashMap<PathBuf, Slot>>,
}

impl FileLocks {
    pub async fn lock(&self, path: &Path) -> FileGuard<'_> {
        let slot = {
            let mut t = self.table.locked();
            t.entry(path.to_owned()).or_default().clone()
        };
        // The owned guard keeps its own reference to the slot; `slot` is dropped here.
        let guard = slot.lock_owned().await;
        FileGuard { locks: self, path: path.to_owned(), guard: Some(guard) }
    }

    /// Entries currently in the table.
    pub fn len(&self) -> usize {
        self.table.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct FileGuard<'a> {
    locks: &'a FileLocks,
    path: PathBuf,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for FileGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.locks.table.locked();
        // Release first: then only the table holds the slot unless someone waits for it.
        drop(self.guard.take());
        if t.get(&self.path).is_some_and(|s| Arc::strong_count(s) == 1) {
            t.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_away_and_waiters_keep_them() {
        let locks = FileLocks::default();
        let p = Path::new("/x");
        {
            let _g = locks.lock(p).await;
            assert_eq!(locks.len(), 1);
        }
        assert!(locks.is_empty(), "released lock leaves no entry");

        let locks = Arc::new(FileLocks::default());
        let g = locks.lock(p).await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(Path::new("/x")).await;
        });
        tokio::task::yield_now().await;
        drop(g);
        assert_eq!(locks.len(), 1, "a waiter keeps the entry");
        waiter.await.unwrap();
        assert!(locks.is_empty());
    }
}
