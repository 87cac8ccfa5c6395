//! The keys of the C sample configs that fastdfs-rs accepts but does not act on, in one table
//! per file. A key set to anything but its FastDFS default gets one warning at startup saying
//! what fastdfs-rs does instead, so no setting is ignored silently. Every other key of the C
//! samples is honoured, some more strictly than asked: `sync_wait_msec` (senders are woken by
//! each new record), `sync_binlog_buff_interval` and the storage's `sync_log_buff_interval`
//! (every record is synced before the answer).

use super::ini::{parse_bool, parse_size, Keys};

/// One accepted-but-not-acted-on key.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    pub key: &'static str,
    /// The C default, in the form the sample writes it.
    pub default: &'static str,
    /// What fastdfs-rs does instead.
    pub instead: &'static str,
}

const fn u(key: &'static str, default: &'static str, instead: &'static str) -> Unsupported {
    Unsupported { key, default, instead }
}

const THREADS: &str =
    "not needed: one thread accepts, and work_threads threads (at most one per core) serve connections";

/// Keys shared by both daemons' files.
const COMMON: &[Unsupported] = &[
    u("address_family", "auto", "listening follows bind_addr"),
    u("use_io_uring", "false", "not supported: epoll through tokio"),
    u("use_send_zc", "true", "not supported without io_uring: downloads are sent with sendfile"),
    u("accept_threads", "1", THREADS),
    u("thread_stack_size", "256KB", THREADS),
    u("min_buff_size", "8KB", "not needed: buffers are sized per request"),
    u("use_connection_pool", "false", "not needed: connections between daemons are kept open"),
    u("connection_pool_max_idle_time", "3600", "not needed: connections between daemons are kept open"),
];

/// tracker.conf.
pub const TRACKER: &[Unsupported] = &[
    u("sync_log_buff_interval", "1", "not needed: state files are written when they change"),
    u(
        "trunk_init_check_occupying",
        "false",
        "every slot is checked before it is handed out: one occupied by a file is taken out of the free space",
    ),
    u("trunk_init_reload_from_binlog", "false", "the free space is always rebuilt from the trunk binlog"),
];

/// storage.conf.
pub const STORAGE: &[Unsupported] = &[
    u(
        "disk_rw_separated",
        "true",
        "not needed: reads run on the blocking pool, writes on disk_writer_threads per store path",
    ),
    u(
        "disk_reader_threads",
        "1",
        "not needed: reads run on the blocking pool, writes on disk_writer_threads per store path",
    ),
    u("disk_recovery_threads", "1", "disk recovery copies one file at a time"),
    u("sync_min_threads", "1", "not needed: one replication task per member, on the async runtime"),
    u("sync_max_threads", "auto", "not needed: one replication task per member, on the async runtime"),
    u("if_alias_prefix", "", "not supported: every interface address counts as this host's"),
    u("key_namespace", "FastDFS", "FastDHT's: de-duplication is built in, with a local index"),
    u("keep_alive", "0", "FastDHT's: de-duplication is built in, with a local index"),
];

/// A value in a comparable form: booleans as 0/1, sizes as bytes.
fn normal(v: &str) -> String {
    let t = v.trim();
    let l = t.to_ascii_lowercase();
    if matches!(l.as_str(), "true" | "yes" | "on" | "false" | "no" | "off") {
        return (parse_bool(&l) as u8).to_string();
    }
    parse_size(t).map_or(l, |n| n.to_string())
}

/// Notes a warning for every key of `table` (and the common ones) set to a non-default value.
pub fn check(keys: &Keys<'_>, table: &[Unsupported]) {
    for k in COMMON.iter().chain(table) {
        if let Some(e) = keys.entry(k.key) {
            if normal(&e.value) != normal(k.default) {
                keys.warn(k.key, &format!("{:?} is accepted but has no effect ({})", e.value, k.instead));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ini;

    #[test]
    fn only_non_default_values_warn() {
        let ini = Ini::parse(
            "use_trunk_file = no\nuse_io_uring = true\nthread_stack_size = 256K\nkeep_alive = 1\nport = 1\n",
            std::path::Path::new("storage.conf"),
        )
        .unwrap();
        check(&ini.global(), STORAGE);
        let w = ini.take_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("storage.conf:2: use_io_uring: \"true\""), "{w:?}");
        assert!(w[1].contains("keep_alive"), "{w:?}");
    }

    #[test]
    fn tables_name_no_key_twice() {
        for table in [TRACKER, STORAGE] {
            let mut keys: Vec<&str> = COMMON.iter().chain(table).map(|k| k.key).collect();
            keys.sort();
            let n = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), n);
        }
    }
}
