//! Command codes of the tracker and storage protocols (PROTOCOL.md §3.1, §4.1), and the status
//! byte as a Linux errno.

use std::fmt;

macro_rules! commands {
    ($($name:ident = $code:literal,)*) => {
        /// Every command code FastDFS puts in a request header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Command {
            $($name = $code,)*
        }

        impl TryFrom<u8> for Command {
            type Error = u8;
            fn try_from(v: u8) -> Result<Self, u8> {
                match v {
                    $($code => Ok(Command::$name),)*
                    other => Err(other),
                }
            }
        }

        impl Command {
            pub const ALL: &'static [Command] = &[$(Command::$name,)*];

            /// The command's name as written here (`UploadFile`), for logs and metrics labels.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Command::$name => stringify!($name),)*
                }
            }
        }
    };
}

commands! {
    // storage → storage (replication) and client → storage
    ReportServerId = 9,
    UploadFile = 11,
    DeleteFile = 12,
    SetMetadata = 13,
    DownloadFile = 14,
    GetMetadata = 15,
    SyncCreateFile = 16,
    SyncDeleteFile = 17,
    SyncUpdateFile = 18,
    SyncCreateLink = 19,
    CreateLink = 20,
    UploadSlaveFile = 21,
    QueryFileInfo = 22,
    UploadAppenderFile = 23,
    AppendFile = 24,
    SyncAppendFile = 25,
    FetchOnePathBinlog = 26,
    TrunkAllocSpace = 27,
    TrunkAllocConfirm = 28,
    TrunkFreeSpace = 29,
    TrunkSyncBinlog = 30,
    TrunkGetBinlogSize = 31,
    TrunkDeleteBinlogMarks = 32,
    TrunkTruncateBinlogFile = 33,
    ModifyFile = 34,
    SyncModifyFile = 35,
    TruncateFile = 36,
    SyncTruncateFile = 37,
    RegenerateAppenderFilename = 38,
    SyncRenameFile = 40,
    // tracker ↔ tracker and storage → tracker
    TrackerJoinLeader = 58,
    StorageChangeStatus = 59,
    StorageGetMyIp = 60,
    TrackerGetSysFilesStart = 61,
    TrackerGetSysFilesEnd = 62,
    TrackerGetOneSysFile = 63,
    TrackerGetStatus = 64,
    TrackerPingLeader = 65,
    TrackerNotifyNextLeader = 66,
    TrackerCommitNextLeader = 67,
    TrackerNotifyReselectLeader = 68,
    StorageFetchStorageIds = 69,
    StorageGetServerId = 70,
    StorageGetStatus = 71,
    StorageFetchTrunkFid = 72,
    StorageReportTrunkFid = 73,
    StorageReportTrunkFree = 74,
    StorageParameterReq = 75,
    StorageReportStatus = 76,
    StorageChangelogReq = 77,
    StorageReportIpChanged = 78,
    StorageSyncDestQuery = 79,
    StorageJoin = 81,
    Quit = 82,
    StorageBeat = 83,
    StorageReportDiskUsage = 84,
    StorageReplicaChg = 85,
    StorageSyncSrcReq = 86,
    StorageSyncDestReq = 87,
    StorageSyncNotify = 88,
    StorageSyncReport = 89,
    // client → tracker
    ServerListOneGroup = 90,
    ServerListAllGroups = 91,
    ServerListStorage = 92,
    ServerDeleteStorage = 93,
    ServerSetTrunkServer = 94,
    ServerGetLeader = 95,
    ServerTrackerClusterStat = 96,
    ServerStorageClusterStat = 97,
    ServerStorageVolumnStat = 98,
    Resp = 100,
    QueryStoreWithoutGroupOne = 101,
    QueryFetchOne = 102,
    QueryUpdate = 103,
    QueryStoreWithGroupOne = 104,
    QueryFetchAll = 105,
    QueryStoreWithoutGroupAll = 106,
    QueryStoreWithGroupAll = 107,
    ServerDeleteGroup = 108,
    StorageGetGroupName = 109,
    ActiveTest = 111,
    // fastdfs-rs's own (C answers EINVAL): client → storage
    ListFiles = 120,
    // fastdfs-rs's own: trunk server → member (`delete_unused_trunk_files`)
    TrunkRemoveFiles = 121,
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        c as u8
    }
}

/// The status byte of a response: a Linux errno (PROTOCOL.md §1.2), whatever the host is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    pub const OK: Status = Status(0);
    pub const EPERM: Status = Status(1);
    pub const ENOENT: Status = Status(2);
    pub const EINTR: Status = Status(4);
    pub const EIO: Status = Status(5);
    pub const EAGAIN: Status = Status(11);
    pub const ENOMEM: Status = Status(12);
    pub const EACCES: Status = Status(13);
    pub const EFAULT: Status = Status(14);
    pub const EBUSY: Status = Status(16);
    pub const EEXIST: Status = Status(17);
    pub const EISDIR: Status = Status(21);
    pub const EINVAL: Status = Status(22);
    pub const ENOSPC: Status = Status(28);
    /// "Machine is not on the network": C's answer to 94 for a storage that is not ACTIVE.
    pub const ENONET: Status = Status(64);
    pub const ENAMETOOLONG: Status = Status(36);
    pub const EOPNOTSUPP: Status = Status(95);
    pub const ECONNREFUSED: Status = Status(111);
    pub const ETIMEDOUT: Status = Status(110);
    pub const EALREADY: Status = Status(114);
    pub const ECANCELED: Status = Status(125);

    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "EPERM",
            2 => "ENOENT",
            4 => "EINTR",
            5 => "EIO",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            21 => "EISDIR",
            22 => "EINVAL",
            28 => "ENOSPC",
            36 => "ENAMETOOLONG",
            95 => "EOPNOTSUPP",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            114 => "EALREADY",
            125 => "ECANCELED",
            _ => "errno",
        }
    }

    /// Maps a host I/O error to the Linux errno that goes on the wire.
    pub fn from_io(e: &std::io::Error) -> Status {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Status::ENOENT,
            K::PermissionDenied => Status::EACCES,
            K::AlreadyExists => Status::EEXIST,
            K::InvalidInput | K::InvalidData => Status::EINVAL,
            K::TimedOut => Status::ETIMEDOUT,
            K::OutOfMemory => Status::ENOMEM,
            K::Interrupted => Status::EINTR,
            _ => match e.raw_os_error() {
                // Linux hosts: the raw value is already the wire value.
                Some(n) if (1..128).contains(&n) && cfg!(target_os = "linux") => Status(n as u8),
                _ => Status::EIO,
            },
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for &c in Command::ALL {
            assert_eq!(Command::try_from(c as u8), Ok(c));
        }
        assert_eq!(Command::try_from(250), Err(250));
        assert_eq!(Command::ALL.len(), 83);
    }

    #[test]
    fn well_known_codes() {
        assert_eq!(Command::UploadFile as u8, 11);
        assert_eq!(Command::QueryStoreWithoutGroupOne as u8, 101);
        assert_eq!(Command::ActiveTest as u8, 111);
        assert_eq!(Command::SyncRenameFile as u8, 40);
        assert_eq!(Status::ENOSPC.0, 28);
        assert_eq!(Status::EOPNOTSUPP.0, 95);
    }
}
