//! Store paths on disk (PROTOCOL.md §5.6): `<store_path>/data/HH/LL/` directories created at
//! first start, the round-robin (or hashed) choice of directory, free-space checks, and the
//! durable write that makes a file reachable by its name only once it is complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::ReservedSpace;
use crate::file_id::RemoteFilename;
use crate::locked::MutexExt;

/// Where uploads are written before they get their final name; emptied at start, so a crash
/// never leaves a half file behind a name.
pub const TMP_DIR: &str = ".tmp";

#[derive(Debug)]
pub struct StorePath {
    pub root: PathBuf,
    pub readonly: bool,
    /// Where its files go, each possibly its own filesystem: `data/` and every mount point
    /// below it (as found at start). C measured the root, which misjudges a volume mounted on
    /// `data/` (the usual container layout).
    measured: Vec<PathBuf>,
    /// Free/total space in MB of the fullest of `measured`, from the last statvfs.
    pub free_mb: AtomicU64,
    pub total_mb: AtomicU64,
}

/// The round-robin directory cursor (`file_distribute_path_mode = 0`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirCursor {
    pub high: u32,
    pub low: u32,
    pub count: u64,
}

#[derive(Debug)]
pub struct StorePaths {
    pub paths: Vec<StorePath>,
    pub subdirs: u32,
    rotate_count: u64,
    hashed: bool,
    cursor: Mutex<DirCursor>,
    next_path: AtomicUsize,
    /// When a refusal for want of space was last logged (unix seconds): once a second at most.
    refusal_logged_at: AtomicI64,
}

fn hex2(n: u32) -> String {
    format!("{n:02X}")
}

impl StorePaths {
    /// Creates the directory tree where missing and empties the temp directories.
    pub fn open(
        roots: &[PathBuf],
        readonly: &[bool],
        subdirs: u32,
        rotate_count: u64,
        hashed: bool,
        cursor: DirCursor,
    ) -> std::io::Result<Self> {
        let mut paths = Vec::with_capacity(roots.len());
        for (i, root) in roots.iter().enumerate() {
            let data = root.join("data");
            // A complete tree ends with the last directory; only build when it is missing.
            if !data.join(hex2(subdirs - 1)).join(hex2(subdirs - 1)).is_dir() {
                tracing::info!("creating {}x{} data directories under {}", subdirs, subdirs, data.display());
                for h in 0..subdirs {
                    for l in 0..subdirs {
                        std::fs::create_dir_all(data.join(hex2(h)).join(hex2(l)))?;
                    }
                }
            }
            let tmp = data.join(TMP_DIR);
            if tmp.exists() {
                let mut removed = 0;
                for e in std::fs::read_dir(&tmp)? {
                    let e = e?;
                    if std::fs::remove_file(e.path()).is_ok() {
                        removed += 1;
                    }
                }
                if removed > 0 {
                    tracing::warn!("removed {removed} unfinished upload(s) from {}", tmp.display());
                }
            }
            std::fs::create_dir_all(&tmp)?;
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let p = StorePath {
                root: root.clone(),
                readonly: readonly.get(i).copied().unwrap_or(false),
                measured: std::iter::once(data.clone()).chain(mounts_below(&mounts, &data)).collect(),
                free_mb: AtomicU64::new(0),
                total_mb: AtomicU64::new(0),
            };
            p.refresh_space();
            paths.push(p);
        }
        let cursor = DirCursor { high: cursor.high % subdirs, low: cursor.low % subdirs, count: cursor.count };
        Ok(Self {
            paths,
            subdirs,
            rotate_count: rotate_count.max(1),
            hashed,
            cursor: Mutex::new(cursor),
            next_path: AtomicUsize::new(0),
            refusal_logged_at: AtomicI64::new(0),
        })
    }

    pub fn cursor(&self) -> DirCursor {
        *self.cursor.locked()
    }

    /// The directory for the next file.
    pub fn next_dir(&self, rng: &mut fastrand::Rng) -> (u8, u8) {
        if self.hashed {
            let n = rng.u32(..) % 65536;
            return (((n >> 8) % self.subdirs) as u8, ((n & 0xFF) % self.subdirs) as u8);
        }
        let mut c = self.cursor.locked();
        let out = (c.high as u8, c.low as u8);
        c.count += 1;
        if c.count >= self.rotate_count {
            c.count = 0;
            c.low += 1;
            if c.low >= self.subdirs {
                c.low = 0;
                c.high = (c.high + 1) % self.subdirs;
            }
        }
        out
    }

    /// Picks a store path for an upload: the requested one if writable and not full, else
    /// round robin (or the freest with `most_free`) among those that are.
    pub fn choose(&self, requested: i8, size: u64, reserved: ReservedSpace, most_free: bool) -> Option<usize> {
        let n = self.paths.len();
        let fits = |i: usize| {
            let p = &self.paths[i];
            let (free, total) = (p.free_mb.load(Ordering::Relaxed) as i64, p.total_mb.load(Ordering::Relaxed) as i64);
            !p.readonly && reserved.allows(free - (size >> 20) as i64, total, n as i64)
        };
        if requested >= 0 && (requested as usize) < n && fits(requested as usize) {
            return Some(requested as usize);
        }
        if most_free {
            return (0..n).filter(|&i| fits(i)).max_by_key(|&i| self.paths[i].free_mb.load(Ordering::Relaxed));
        }
        let start = self.next_path.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| fits(i))
    }

    /// Says in the log (once a second at most) why an upload of `size` bytes found no store
    /// path: each path's measured space against the reserve.
    pub fn log_refusal(&self, size: u64, reserved: ReservedSpace) {
        let now = crate::timefmt::now_unix();
        if self.refusal_logged_at.swap(now, Ordering::Relaxed) == now {
            return;
        }
        let paths: Vec<String> = self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (free, total) = (p.free_mb.load(Ordering::Relaxed), p.total_mb.load(Ordering::Relaxed));
                let ro = if p.readonly { ", read-only" } else { "" };
                format!("M{i:02X} {}: {free} MB free of {total} MB{ro}", p.fullest().display())
            })
            .collect();
        tracing::warn!(
            "upload of {size} bytes refused (ENOSPC): no store path keeps reserved_storage_space = {reserved}: {}",
            paths.join("; ")
        );
    }

    pub fn refresh_all(&self) {
        for p in &self.paths {
            p.refresh_space();
        }
    }

    pub fn local_path(&self, name: &RemoteFilename) -> Option<PathBuf> {
        self.paths.get(name.store_path_index as usize).map(|p| p.root.join(name.relative_path()))
    }

    /// The `data/HH/LL` directories of store path `index`, each with its name prefix
    /// (`Mxx/HH/LL`).
    pub fn subdirs_of(&self, index: usize) -> impl Iterator<Item = (String, PathBuf)> + '_ {
        let data = self.paths[index].root.join("data");
        let n = self.subdirs;
        (0..n).flat_map(move |high| (0..n).map(move |low| (high, low))).map(move |(high, low)| {
            let rel = format!("{high:02X}/{low:02X}");
            (format!("M{index:02X}/{rel}"), data.join(rel))
        })
    }

    /// The remote filename of a file's path in one of our store paths (`<root>/data/HH/LL/x`).
    pub fn remote_name_of(&self, path: &Path) -> Option<String> {
        self.paths.iter().enumerate().find_map(|(i, p)| {
            let rest = path.strip_prefix(p.root.join("data")).ok()?.to_str()?;
            let name = format!("M{i:02X}/{rest}");
            RemoteFilename::parse(&name, Some(self.paths.len())).ok().map(|_| name)
        })
    }

    /// A fresh temp file name under a store path.
    pub fn temp_path(&self, index: usize) -> PathBuf {
        crate::durable::unique_name(&self.temp_dir(index), "f")
    }

    /// Where unfinished writes of a store path live (emptied at start).
    pub fn temp_dir(&self, index: usize) -> PathBuf {
        self.paths[index].root.join("data").join(TMP_DIR)
    }
}

impl StorePath {
    /// Measures the filesystems its files go to; the fullest one (least free) is its space.
    pub fn refresh_space(&self) {
        if let Some((_, free, total)) = self.measure().min_by_key(|&(_, free, _)| free) {
            self.total_mb.store(total, Ordering::Relaxed);
            self.free_mb.store(free, Ordering::Relaxed);
        }
    }

    /// The measured place with the least free space (for messages).
    fn fullest(&self) -> PathBuf {
        self.measure().min_by_key(|&(_, free, _)| free).map_or_else(|| self.root.clone(), |(p, _, _)| p.to_owned())
    }

    /// (place, free MB, total MB) of each measured place that statvfs answers for.
    fn measure(&self) -> impl Iterator<Item = (&Path, u64, u64)> {
        self.measured.iter().filter_map(|place| match nix::sys::statvfs::statvfs(place) {
            Ok(s) => {
                // The field types differ between targets; u64 holds them all.
                #[allow(clippy::unnecessary_cast)]
                let (unit, blocks, avail) = (s.fragment_size() as u64, s.blocks() as u64, s.blocks_available() as u64);
                Some((place.as_path(), (avail * unit) >> 20, (blocks * unit) >> 20))
            }
            Err(e) => {
                tracing::error!("statvfs {}: {e}", place.display());
                None
            }
        })
    }
}

/// The mount points strictly below `dir`, from the text of `/proc/self/mountinfo` (its fifth
/// field, with the kernel's octal escapes for space, tab, newline and backslash).
fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let unescape = |field: &str| {
        let (mut out, bytes, mut i) = (Vec::new(), field.as_bytes(), 0);
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
            match (bytes[i], octal) {
                (b'\\', Some(b)) => {
                    out.push(b);
                    i += 4;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
    };
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|m| m != dir && m.starts_with(dir))
        .collect()
}

/// Makes `link` a symbolic link to `target`. Relative when both live in one store path's data
/// directory (the file name within one directory, `../../HH/LL/name` across two): under the 60
/// bytes ext4 keeps inside the inode, where an absolute path costs a 4 KiB block per link (as
/// much as the small file a de-duplicated link replaces), and still right if the store path is
/// mounted elsewhere. C writes absolute links; it reads these as any program does.
pub fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let dir = |p: &Path| p.parent().map(Path::to_path_buf);
    let data = |p: &Path| p.parent().and_then(Path::parent).and_then(Path::parent).map(Path::to_path_buf);
    let relative = match (target.file_name(), target.strip_prefix(data(link).unwrap_or_default())) {
        (Some(name), _) if dir(target) == dir(link) => PathBuf::from(name),
        (Some(_), Ok(rest)) if data(target) == data(link) => Path::new("../..").join(rest),
        _ => target.to_path_buf(),
    };
    std::os::unix::fs::symlink(relative, link)
}

/// Where the symbolic link `link` points: relative targets resolved against its directory,
/// `..` folded. `None` when it is not a link.
pub fn link_target(link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).ok()?;
    if target.is_absolute() {
        return Some(target);
    }
    let mut out = link.parent()?.to_path_buf();
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_rotation_and_temp_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p0");
        let sp = StorePaths::open(std::slice::from_ref(&root), &[false], 4, 2, false, DirCursor::default()).unwrap();
        assert!(root.join("data/03/03").is_dir());
        assert!(!root.join("data/04").exists());
        let mut rng = fastrand::Rng::with_seed(1);
        let dirs: Vec<(u8, u8)> = (0..10).map(|_| sp.next_dir(&mut rng)).collect();
        assert_eq!(dirs, [(0, 0), (0, 0), (0, 1), (0, 1), (0, 2), (0, 2), (0, 3), (0, 3), (1, 0), (1, 0)]);
        std::fs::write(root.join("data/.tmp/leftover.tmp"), b"half").unwrap();
        let sp = StorePaths::open(std::slice::from_ref(&root), &[false], 4, 2, false, sp.cursor()).unwrap();
        assert_eq!(std::fs::read_dir(root.join("data/.tmp")).unwrap().count(), 0, "unfinished uploads removed");
        assert_eq!(sp.cursor(), DirCursor { high: 1, low: 1, count: 0 });
    }

    #[test]
    fn path_choice_skips_readonly_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let roots = [dir.path().join("a"), dir.path().join("b")];
        let sp = StorePaths::open(&roots, &[true, false], 1, 100, false, DirCursor::default()).unwrap();
        let r = ReservedSpace::Megabytes(1);
        assert_eq!(sp.choose(0, 0, r, false), Some(1), "read-only path 0 is skipped");
        assert_eq!(sp.choose(-1, 0, r, true), Some(1));
        assert_eq!(sp.choose(1, 0, ReservedSpace::Ratio(0.999999), false), None, "full");
    }

    #[test]
    fn mount_points_below_the_data_directory() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 8:17 / /srv/fdfs/data rw - xfs /dev/sdb1 rw\n\
                    41 40 8:33 / /srv/fdfs/data/0A rw - xfs /dev/sdc1 rw\n\
                    42 22 8:49 / /srv/fdfs/data\\040old rw - xfs /dev/sdd1 rw\n\
                    43 40 8:65 / /srv/fdfs/data/my\\040disk rw - xfs /dev/sde1 rw\n";
        let below = mounts_below(info, Path::new("/srv/fdfs/data"));
        assert_eq!(below, [PathBuf::from("/srv/fdfs/data/0A"), PathBuf::from("/srv/fdfs/data/my disk")]);
        assert!(mounts_below(info, Path::new("/srv/other/data")).is_empty());
    }

    #[test]
    fn links_in_a_store_path_are_short_and_resolve_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a-long-store-path-name-for-the-test/data");
        let (d1, d2) = (data.join("00/01"), data.join("0A/FF"));
        std::fs::create_dir_all(&d1).unwrap();
        std::fs::create_dir_all(&d2).unwrap();
        let target = d1.join("wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg");
        std::fs::write(&target, b"content").unwrap();
        for (link, want) in [
            (d1.join("same-dir.jpg"), "wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg"),
            (d2.join("other-dir.jpg"), "../../00/01/wKgBAGVr1q2AZ1cxAADS9IecoKQ527.jpg"),
        ] {
            symlink(&target, &link).unwrap();
            let raw = std::fs::read_link(&link).unwrap();
            assert_eq!(raw, Path::new(want));
            assert!(raw.as_os_str().len() < 60, "kept in the inode");
            assert_eq!(link_target(&link).unwrap(), target);
            assert_eq!(std::fs::read(&link).unwrap(), b"content");
        }
        let elsewhere = dir.path().join("other/x.jpg");
        std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
        let outside = d2.join("outside.jpg");
        symlink(&elsewhere, &outside).unwrap();
        assert_eq!(std::fs::read_link(&outside).unwrap(), elsewhere, "absolute outside the data directory");
        assert!(link_target(&d2).is_none(), "not a link");
    }
}
