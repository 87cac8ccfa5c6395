//! Storage status values (PROTOCOL.md §7.1): what the tracker holds for each storage and
//! sends in briefs and listings. One byte on the wire; the order matters (the C code compares
//! them), so the values are fixed here once.

/// A storage's status as a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum StorageStatus {
    Init = 0,
    WaitSync = 1,
    Syncing = 2,
    IpChanged = 3,
    Deleted = 4,
    Offline = 5,
    Online = 6,
    Active = 7,
    Recovery = 9,
    /// Not known yet (never on the wire from a tracker).
    None = 99,
}

impl StorageStatus {
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
            // C's caption function has no case for it.
            StorageStatus::None => "UNKNOWN",
        }
    }

    /// OFFLINE, ONLINE and ACTIVE: the storage's data is complete.
    pub const fn available(self) -> bool {
        matches!(self, StorageStatus::Offline | StorageStatus::Online | StorageStatus::Active)
    }
}

impl TryFrom<u8> for StorageStatus {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
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
            other => return Err(other),
        })
    }
}

/// The wire bytes of [`StorageStatus`], for the fields that carry them as `u8`.
pub const INIT: u8 = StorageStatus::Init as u8;
pub const WAIT_SYNC: u8 = StorageStatus::WaitSync as u8;
pub const SYNCING: u8 = StorageStatus::Syncing as u8;
pub const IP_CHANGED: u8 = StorageStatus::IpChanged as u8;
pub const DELETED: u8 = StorageStatus::Deleted as u8;
pub const OFFLINE: u8 = StorageStatus::Offline as u8;
pub const ONLINE: u8 = StorageStatus::Online as u8;
pub const ACTIVE: u8 = StorageStatus::Active as u8;
pub const RECOVERY: u8 = StorageStatus::Recovery as u8;
pub const NONE: u8 = StorageStatus::None as u8;

/// The name C's tools print for a status byte (`UNKNOWN` for values no release uses).
pub fn name(s: u8) -> &'static str {
    StorageStatus::try_from(s).map_or("UNKNOWN", StorageStatus::name)
}

/// OFFLINE, ONLINE and ACTIVE: the data is complete.
pub fn available(s: u8) -> bool {
    StorageStatus::try_from(s).is_ok_and(StorageStatus::available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_names_round_trip() {
        for v in 0..=255u8 {
            if let Ok(s) = StorageStatus::try_from(v) {
                assert_eq!(s as u8, v);
                assert_eq!(name(v), s.name());
            } else {
                assert_eq!(name(v), "UNKNOWN");
            }
        }
        assert!(available(ACTIVE) && available(OFFLINE) && !available(SYNCING));
    }
}
