//! The storage's metrics (`metrics_listen`): requests are counted as they finish; disk space,
//! connections, binlog position, replication lag per member, status and trunk space are read
//! at each scrape.

use std::time::Duration;

use super::StorageServer;
use crate::metrics::GaugeLabels;
use crate::protocol::{status, Command};
use crate::timefmt::now_unix;

/// The gauge families read at scrape time.
pub const GAUGES: &[(&str, &str)] = &[
    ("store_path_free_bytes", "Free space of each store path"),
    ("store_path_total_bytes", "Size of each store path's filesystem"),
    ("store_path_reserved_bytes", "Space each store path keeps free (the tracker's reserved_storage_space)"),
    ("connections", "Connections open now (current) and the most at once (max)"),
    ("binlog_position_bytes", "Where the binlog is written: file index and offset"),
    ("replication_behind_bytes", "Binlog bytes a member has not been sent yet"),
    ("replication_behind_seconds", "Age of the oldest change a member has not been sent, 0 when caught up"),
    ("storage_status", "This storage's status at the trackers (7 = ACTIVE)"),
    ("trunk_free_bytes", "Free space in trunk files, on the trunk server"),
];

/// How far the binlog was sent to a member.
#[derive(Debug, Clone, Copy, Default)]
pub struct SentTo {
    pub index: u32,
    pub offset: u64,
    /// Timestamp of the last record sent (0: none yet).
    pub last_record: i64,
}

fn label(k: &str, v: impl ToString) -> GaugeLabels {
    vec![(k.to_owned(), v.to_string())]
}

impl StorageServer {
    /// A served request: the beat counters and the metrics.
    pub fn count_request(&self, cmd: Command, ok: bool, bytes: u64, took: Duration) {
        self.stats.record(cmd, ok, bytes);
        self.metrics.request(cmd.label(), ok, took);
        if bytes > 0 {
            self.metrics.content(cmd != Command::DownloadFile, bytes);
        }
    }

    fn refresh_gauges(&self) {
        let m = &self.metrics;
        let paths = self.paths.paths.iter().enumerate();
        m.set_gauges(
            "store_path_free_bytes",
            paths
                .clone()
                .map(|(i, p)| (label("path", i), (p.free_mb.load(std::sync::atomic::Ordering::Relaxed) << 20) as i64)),
        );
        m.set_gauges(
            "store_path_total_bytes",
            paths
                .map(|(i, p)| (label("path", i), (p.total_mb.load(std::sync::atomic::Ordering::Relaxed) << 20) as i64)),
        );
        // What an upload is judged against, beside the two figures it is judged on.
        let reserved = self.identity.params().reserved;
        m.set_gauges(
            "store_path_reserved_bytes",
            self.paths.paths.iter().enumerate().map(|(i, p)| {
                let total = p.total_mb.load(std::sync::atomic::Ordering::Relaxed);
                (label("path", i), reserved.reserved_mb(total as i64) << 20)
            }),
        );
        let (current, max) = self.stats.conns.get();
        m.set_gauges("connections", [(label("state", "current"), current as i64), (label("state", "max"), max as i64)]);
        let (index, offset) = self.binlog.position();
        m.set_gauges(
            "binlog_position_bytes",
            [(label("part", "index"), index as i64), (label("part", "offset"), offset as i64)],
        );
        let sent = self.membership.sent_to();
        let now = now_unix();
        let behind = |s: &SentTo| -> i64 {
            let files = index.saturating_sub(s.index) as u64 * super::binlog::ROTATE_SIZE;
            (files + offset).saturating_sub(s.offset) as i64
        };
        m.set_gauges("replication_behind_bytes", sent.iter().map(|(p, s)| (label("peer", p), behind(s))));
        m.set_gauges(
            "replication_behind_seconds",
            sent.iter().map(|(p, s)| {
                let secs = if behind(s) > 0 && s.last_record > 0 { (now - s.last_record).max(0) } else { 0 };
                (label("peer", p), secs)
            }),
        );
        m.set_gauges(
            "storage_status",
            [(label("status", self.membership.status().name()), self.membership.status().byte() as i64)],
        );
        m.set_gauges("trunk_free_bytes", self.trunk_report().map(|(_, mb)| (Vec::new(), mb << 20)));
    }
}

impl crate::metrics::Exporter for StorageServer {
    fn metrics(&self) -> String {
        self.refresh_gauges();
        self.metrics.encode()
    }

    fn health(&self) -> (bool, String) {
        let recovering = self.recovering();
        if !recovering.is_empty() {
            return (false, format!("recovering store path(s) {recovering:?}"));
        }
        let s = self.membership.status();
        (s == status::ACTIVE, s.name().to_owned())
    }
}
