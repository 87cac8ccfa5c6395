//! Storage status values (PROTOCOL.md §7.1): what the tracker holds for each storage and
//! sends in briefs and listings. One byte on the wire; the order matters (the C code compares
//! them), so the values are fixed here once and compared as bytes.

/// A storage's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageStatus {
    #[default]
    Init,
    WaitSync,
    Syncing,
    IpChanged,
    Deleted,
    Offline,
    Online,
    Active,
    Recovery,
    /// Not known yet (never on the wire from a tracker).
    None,
    /// A byte no FastDFS release uses, kept as it came (a decoder never fails on it; C's
    /// tools print it as UNKNOWN).
    Other(u8),
}

impl StorageStatus {
    /// The wire byte.
    pub const fn byte(self) -> u8 {
        match self {
            StorageStatus::Init => 0,
            StorageStatus::WaitSync => 1,
            StorageStatus::Syncing => 2,
            StorageStatus::IpChanged => 3,
            StorageStatus::Deleted => 4,
            StorageStatus::Offline => 5,
            StorageStatus::Online => 6,
            StorageStatus::Active => 7,
            StorageStatus::Recovery => 9,
            StorageStatus::None => 99,
            StorageStatus::Other(b) => b,
        }
    }

    /// The status a wire byte says.
    pub const fn from_byte(b: u8) -> Self {
        match b {
            0 => StorageStatus::Init,
            1 => StorageStatus::WaitSync,
            2 => StorageStatus::Syncing,
            3 => StorageStatus::IpChanged,
            4 => StorageStatus::Deleted,
            5 => StorageStatus::Offline,
            6 => StorageStatus::Online,
            7 => StorageStatus::Active,
            9 => StorageStatus::Recovery,
            99 => StorageStatus::None,
            other => StorageStatus::Other(other),
        }
    }

    /// The name C's tools print.
    pub const fn name(self) -> &'static str {
        match self {
            StorageStatus::Init => "INIT",
            StorageStatus::WaitSync => "WAIT_SYNC",
            StorageStatus::Syncing => "SYNCING",
            StorageStatus::IpChanged => "IP_CHANGED",
            StorageStatus::Deleted => "DELETED",
            StorageStatus::Offline => "OFFLINE",
            StorageStatus::Online => "ONLINE",
            StorageStatus::Active => "ACTIVE",
            StorageStatus::Recovery => "RECOVERY",
            // C's caption function has no case for these.
            StorageStatus::None | StorageStatus::Other(_) => "UNKNOWN",
        }
    }

    /// OFFLINE, ONLINE and ACTIVE: the storage's data is complete.
    pub const fn available(self) -> bool {
        matches!(self, StorageStatus::Offline | StorageStatus::Online | StorageStatus::Active)
    }
}

impl PartialOrd for StorageStatus {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// As C compares them: by their bytes.
impl Ord for StorageStatus {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.byte().cmp(&other.byte())
    }
}

/// The statuses by C's names (`FDFS_STORAGE_STATUS_*`), usable in patterns.
pub const INIT: StorageStatus = StorageStatus::Init;
pub const WAIT_SYNC: StorageStatus = StorageStatus::WaitSync;
pub const SYNCING: StorageStatus = StorageStatus::Syncing;
pub const IP_CHANGED: StorageStatus = StorageStatus::IpChanged;
pub const DELETED: StorageStatus = StorageStatus::Deleted;
pub const OFFLINE: StorageStatus = StorageStatus::Offline;
pub const ONLINE: StorageStatus = StorageStatus::Online;
pub const ACTIVE: StorageStatus = StorageStatus::Active;
pub const RECOVERY: StorageStatus = StorageStatus::Recovery;
pub const NONE: StorageStatus = StorageStatus::None;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_names_round_trip() {
        for v in 0..=255u8 {
            let s = StorageStatus::from_byte(v);
            assert_eq!(s.byte(), v);
            if matches!(s, StorageStatus::Other(_)) {
                assert_eq!(s.name(), "UNKNOWN");
            }
        }
        assert_eq!(StorageStatus::from_byte(7), StorageStatus::Active);
        assert!(StorageStatus::Active.available() && StorageStatus::Offline.available());
        assert!(!StorageStatus::Syncing.available());
        assert!(StorageStatus::Online < StorageStatus::Active && StorageStatus::Active < StorageStatus::Recovery);
    }
}
