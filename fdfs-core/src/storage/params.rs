//! The cluster-wide settings a storage takes from its tracker (PARAMETER_REQ), with C's defaults
//! until the first answer.

use crate::config::ReservedSpace;

/// Cluster-wide settings the storage takes from its tracker (PARAMETER_REQ).
#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    pub reserved: ReservedSpace,
    /// `store_path = 2` on the tracker: most free space.
    pub store_path_most_free: bool,
    pub use_storage_id: bool,
    pub id_in_filename: bool,
    /// `response_ip_addr_size` (6.15+ trackers): the IP width of QUERY_FILE_INFO answers.
    pub response_ip_size: usize,
    /// `use_trunk_file`: small uploads go into trunk files.
    pub use_trunk_file: bool,
    /// Slot sizes, alignment, trunk file size and merging.
    pub trunk: crate::trunk::space::TrunkSettings,
    /// When the trunk server compresses its trunk binlog, and how many old ones it keeps.
    pub trunk_compress: TrunkCompress,
    /// `trunk_create_file_*`: trunk files created ahead of need.
    pub trunk_advance: TrunkAdvance,
    /// `storage_ip_changed_auto_adjust` (C's default true): a storage that comes back on a new
    /// address tells the trackers (78) and keeps its identity.
    pub ip_changed_auto_adjust: bool,
    /// `store_slave_file_use_link`: slaves stored as links to a content file of their own.
    pub store_slave_file_use_link: bool,
    /// `delete_unused_trunk_files`: the trunk server retires trunk files with no slot in use,
    /// and every member removes them.
    pub delete_unused_trunk_files: bool,
}

/// `trunk_create_file_advance` and its schedule, as the tracker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkAdvance {
    pub enabled: bool,
    /// Minutes after midnight.
    pub time_base: i64,
    /// Seconds.
    pub interval: i64,
    /// Free trunk bytes to have after a round.
    pub threshold: u64,
}

/// `trunk_compress_binlog_*` and `trunk_binlog_max_backups`, as the tracker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunkCompress {
    /// Seconds; 0: never when taking the role.
    pub min_interval: i64,
    /// Seconds; 0: never on a schedule.
    pub interval: i64,
    /// Minutes after midnight the schedule starts from.
    pub time_base: i64,
    pub max_backups: usize,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            reserved: ReservedSpace::DEFAULT,
            store_path_most_free: false,
            use_storage_id: false,
            id_in_filename: false,
            response_ip_size: 16,
            use_trunk_file: false,
            trunk: Default::default(),
            trunk_compress: TrunkCompress { time_base: 3 * 60, ..Default::default() },
            trunk_advance: TrunkAdvance { time_base: 2 * 60, interval: 86_400, ..Default::default() },
            ip_changed_auto_adjust: true,
            store_slave_file_use_link: false,
            delete_unused_trunk_files: false,
        }
    }
}
