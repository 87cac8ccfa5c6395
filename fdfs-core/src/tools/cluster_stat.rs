//! Output of `fdfs_tracker_stat`, `fdfs_storage_stat` and `fdfs_volumn_stat`, line for line as
//! the C 6.16 tools print it.

use std::fmt::Write;

use super::{datetime, human_mb};
use crate::protocol::tracker::{StorageClusterStat, TrackerClusterStat, VolumeStat, VolumeStats};

/// `fdfs_tracker_stat`; `detail` is `-d`. Nothing at all for an empty list, as C prints.
pub fn trackers(list: &[TrackerClusterStat], detail: bool) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut o = String::from("\n");
    for t in list {
        let _ = writeln!(
            o,
            "{}, is_leader: {}, is_active: {}, connections {{alloc: {}, current: {}, max: {}}}",
            t.host, t.is_leader, t.is_active, t.conn_alloc, t.conn_current, t.conn_max
        );
        if detail {
            let _ = write!(o, "  version: {}, up_time: {}", t.version, datetime(t.up_time));
            if t.is_leader != 0 {
                o.push_str("\n\n");
            } else {
                let _ = write!(o, ", last_heartbeat_time: {}\n\n", datetime(t.last_heart_beat_time));
            }
        }
    }
    let _ = write!(o, "\ntracker server count: {}\n\n", list.len());
    o
}

/// `fdfs_storage_stat`; `detail` is `-d`. Nothing at all for an empty list, as C prints.
pub fn storages(list: &[StorageClusterStat], use_storage_id: bool, use_trunk_file: bool, detail: bool) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut o = String::from("\n");
    for s in list {
        if use_storage_id {
            let _ = write!(o, "{} ", s.id);
        }
        let _ = write!(o, "{} {}, ", s.host, s.status.name());
        if use_trunk_file {
            let _ = write!(o, "is_trunk_server: {}, ", s.is_trunk_server);
        }
        let _ =
            writeln!(o, "connections {{alloc: {}, current: {}, max: {}}}", s.conn_alloc, s.conn_current, s.conn_max);
        if detail {
            let _ = write!(
                o,
                "  version: {}, up_time: {}, last_heartbeat_time: {}\n\n",
                s.version,
                datetime(s.up_time),
                datetime(s.last_heart_beat_time)
            );
        }
    }
    let _ = write!(o, "\nstorage server count: {}\n\n", list.len());
    o
}

fn volume_line(o: &mut String, g: &VolumeStat, use_trunk_file: bool) {
    let _ = write!(o, "{} disk_available: {}", g.group, g.is_disk_available);
    if use_trunk_file {
        let _ = write!(o, ", trunk_available: {}", g.is_trunk_available);
    }
    let total = g.total_mb - g.reserved_mb;
    let pct = |part: i64| if total > 0 { part as f64 / total as f64 * 100.0 } else { 0.0 };
    let _ = write!(
        o,
        ", disk space {{total: {}, free: {}, reserved: {}, avail: {}, util: {:.2}%}}",
        human_mb(g.total_mb),
        human_mb(g.free_mb),
        human_mb(g.reserved_mb),
        human_mb(g.avail_mb),
        pct(total - g.avail_mb)
    );
    if use_trunk_file {
        let all = g.avail_mb + g.trunk_free_mb;
        let _ = write!(
            o,
            ", trunk free space: {}, total available {{space: {}, ratio: {:.2}%}}\n\n",
            human_mb(g.trunk_free_mb),
            human_mb(all),
            pct(all)
        );
    } else {
        o.push_str("\n\n");
    }
}

/// `fdfs_volumn_stat`. Nothing at all for an empty list, as C prints.
pub fn volumes(v: &VolumeStats) -> String {
    if v.groups.is_empty() {
        return String::new();
    }
    let mut o = String::from("\n");
    let mut sum = VolumeStat::default();
    let mut available = 0;
    for g in &v.groups {
        sum.total_mb += g.total_mb;
        sum.free_mb += g.free_mb;
        sum.reserved_mb += g.reserved_mb;
        sum.avail_mb += g.avail_mb;
        sum.trunk_free_mb += g.trunk_free_mb;
        sum.is_disk_available |= g.is_disk_available;
        sum.is_trunk_available |= g.is_trunk_available;
        available += (g.is_disk_available != 0 || g.is_trunk_available != 0) as usize;
        volume_line(&mut o, g, v.use_trunk_file);
    }
    if v.groups.len() <= 1 {
        let _ = write!(o, "storage volumn / group count: {}\n\n", v.groups.len());
    } else {
        let bar = "=".repeat(32);
        let _ = writeln!(o, "{bar} VOLUMNS SUMMARY {bar}");
        volume_line(&mut o, &sum, v.use_trunk_file);
        let _ = write!(o, "volumn / group counts {{total: {}, available: {available}}}\n\n", v.groups.len());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_print_nothing() {
        assert_eq!(trackers(&[], true), "");
        assert_eq!(storages(&[], true, true, true), "");
        assert_eq!(volumes(&VolumeStats::default()), "");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_mb(512), "512 MB");
        assert_eq!(human_mb(258_019), "252 GB");
        assert_eq!(human_mb(3 << 20), "3.0 TB");
    }

    #[test]
    fn one_volume_as_c_prints_it() {
        // The group of the A4_volumn_stat capture; the text as C 6.16.1's tool prints it (sizes
        // by libfastcommon's bytes_to_human_str).
        let g = VolumeStat {
            group: "group1".into(),
            total_mb: 258_019,
            free_mb: 71_634,
            reserved_mb: 2_580,
            avail_mb: 69_054,
            trunk_free_mb: 0,
            is_disk_available: 1,
            is_trunk_available: 0,
        };
        let out = volumes(&VolumeStats { use_trunk_file: false, groups: vec![g] });
        assert_eq!(
            out,
            "\ngroup1 disk_available: 1, disk space {total: 252 GB, free: 70 GB, reserved: 2.5 GB, \
             avail: 67 GB, util: 72.97%}\n\nstorage volumn / group count: 1\n\n"
        );
    }
}

/// The 6.16 tools' command line: `[-c config_filename] [flags]`, getopt-style (flags may be
/// combined, `-c` takes the next word or the rest of its own).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatArgs {
    pub config: String,
    pub flags: Vec<char>,
}

pub const DEFAULT_CLIENT_CONF: &str = "/etc/fdfs/client.conf";

/// getopt's way: words that are not options are skipped, and an error is getopt's message
/// (`invalid option -- 'Z'`, `option requires an argument -- 'c'`).
pub fn parse_stat_args(args: &[String], allowed: &str) -> Result<StatArgs, String> {
    let mut out = StatArgs { config: DEFAULT_CLIENT_CONF.into(), flags: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(opts) = a.strip_prefix('-').filter(|o| !o.is_empty()) else { continue };
        for (i, ch) in opts.char_indices() {
            match ch {
                'c' => {
                    let rest = &opts[i + 1..];
                    out.config = if rest.is_empty() {
                        it.next().cloned().ok_or("option requires an argument -- 'c'")?
                    } else {
                        rest.to_owned()
                    };
                    break;
                }
                c if allowed.contains(c) => out.flags.push(c),
                c => return Err(format!("invalid option -- '{c}'")),
            }
        }
    }
    Ok(out)
}
