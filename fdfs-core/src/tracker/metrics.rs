//! The tracker's metrics (`metrics_listen`): requests by command as they finish; groups,
//! storages by status, connections and leadership at each scrape.

use std::collections::BTreeMap;

use super::Tracker;
use crate::locked::RwLockExt;
use crate::metrics::GaugeLabels;

/// The gauge families read at scrape time.
pub const GAUGES: &[(&str, &str)] = &[
    ("tracker_groups", "Groups this tracker knows"),
    ("tracker_storages", "Storages by group and status"),
    ("tracker_group_free_bytes", "Free space of each group (its fullest ACTIVE member)"),
    ("connections", "Connections open now (current) and the most at once (max)"),
    ("tracker_is_leader", "1 on the leader tracker"),
];

impl crate::metrics::Exporter for Tracker {
    fn metrics(&self) -> String {
        let m = &self.metrics;
        let (groups, storages, free) = {
            let c = self.lock();
            let mut by: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
            let mut free = Vec::new();
            for g in c.groups.values() {
                for s in g.storages.values() {
                    *by.entry((g.name.clone(), s.status.name())).or_default() += 1;
                }
                free.push((vec![("group".to_owned(), g.name.clone())], g.space().1 << 20));
            }
            (c.groups.len() as i64, by, free)
        };
        m.set_gauges("tracker_groups", [(Vec::new(), groups)]);
        m.set_gauges(
            "tracker_storages",
            storages.into_iter().map(|((g, s), n)| -> (GaugeLabels, i64) {
                (vec![("group".into(), g), ("status".into(), s.into())], n)
            }),
        );
        m.set_gauges("tracker_group_free_bytes", free);
        let (current, max) = self.conns.get();
        let state = |s: &str| vec![("state".to_owned(), s.to_owned())];
        m.set_gauges("connections", [(state("current"), current as i64), (state("max"), max as i64)]);
        m.set_gauges("tracker_is_leader", [(Vec::new(), self.is_leader() as i64)]);
        m.encode()
    }

    fn health(&self) -> (bool, String) {
        let leader = self.leader.read_locked().clone();
        (true, format!("leader {}", leader.unwrap_or_else(|| "unknown".into())))
    }
}
