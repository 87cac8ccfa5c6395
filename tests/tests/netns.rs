//! Separate hosts, made by the test with network namespaces and veth pairs (root with
//! CAP_NET_ADMIN, as in CI; skipped with a message otherwise): a tracker on the host, storage A
//! in namespace `a` (10.88.1.2) and storage B in `b` (10.88.2.2), replicating through the
//! host's routing; then B's host gets another address (10.88.2.3) and B comes back on it with
//! its identity and data, A continuing its replication from its mark.

use std::process::Command;
use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_e2e::{client_for, eventually, Daemon, TrackerProc};

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

/// Namespaces and links the test made, removed when dropped.
struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// Namespace `fdfs-<name>` joined to the host by a veth pair: the host side gets
    /// `10.88.<net>.1/24`, the namespace side `10.88.<net>.2/24` and a default route via the host.
    fn add(&mut self, name: &str, net: u8) -> bool {
        let ns = format!("fdfs-{name}");
        let (host_if, ns_if) = (format!("fdfsh{net}"), format!("fdfsn{net}"));
        let ok = ip(&["netns", "add", &ns])
            && ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if])
            && ip(&["link", "set", &ns_if, "netns", &ns])
            && ip(&["addr", "add", &format!("10.88.{net}.1/24"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("10.88.{net}.2/24"), "dev", &ns_if])
            && ip(&["netns", "exec", &ns, "ip", "link", "set", &ns_if, "up"])
            && ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
            && ip(&["netns", "exec", &ns, "ip", "route", "add", "default", "via", &format!("10.88.{net}.1")]);
        self.names.push(ns);
        self.names.push(host_if);
        ok
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            if n.starts_with("fdfs-") {
                let _ = ip(&["netns", "del", n]);
            } else {
                let _ = ip(&["link", "del", n]);
            }
        }
    }
}

fn storage_conf(dir: &std::path::Path, bind: &str, tracker: &str) -> std::path::PathBuf {
    let base = dir.join("storage");
    std::fs::create_dir_all(&base).unwrap();
    let conf = dir.join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "group_name = group1\nbind_addr = {bind}\nport = 23000\nbase_path = {0}\nstore_path0 = {0}\n\
             subdir_count_per_path = 2\ntracker_server = {tracker}\nheart_beat_interval = 1\nstat_report_interval = 1\n\
             log_level = debug\n",
            base.display()
        ),
    )
    .unwrap();
    conf
}

/// Uploads `data` to A (10.88.1.2) and waits until the storage at `to` serves it.
async fn upload_and_see_replicated(
    c: &fdfs_core::client::Client,
    to: &str,
    data: &[u8],
) -> fdfs_core::protocol::storage::FileIdResp {
    let r = c.storage.upload("10.88.1.2:23000", UploadKind::Normal, -1, "txt", Content::Bytes(data)).await.unwrap();
    eventually(Duration::from_secs(30), &format!("replicated to {to}"), || async {
        (c.storage.download(to, "group1", &r.filename, 0, 0).await.ok()? == data).then_some(())
    })
    .await;
    r
}

#[tokio::test]
async fn storages_on_separate_hosts_replicate_and_one_moves_to_a_new_address() {
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let mut hosts = Hosts { names: Vec::new() };
    if !(hosts.add("a", 1) && hosts.add("b", 2) && std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").is_ok()) {
        eprintln!("SKIPPED: cannot make network namespaces here (needs root with CAP_NET_ADMIN)");
        return;
    }
    let tracker = TrackerProc::start("bind_addr =\nport = 22199\n");
    let (ta, tb) = ("10.88.1.1:22199", "10.88.2.1:22199");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Daemon::start_in_netns(
        "fdfs-a",
        "fdfs_storaged",
        &storage_conf(da.path(), "10.88.1.2", ta),
        &da.path().join("storage"),
    );
    let conf_b = storage_conf(db.path(), "10.88.2.2", tb);
    let mut b = Daemon::start_in_netns("fdfs-b", "fdfs_storaged", &conf_b, &db.path().join("storage"));
    let c = client_for(&tracker.addr());
    let active = |ips: &'static [&'static str]| {
        let c = &c;
        async move {
            eventually(Duration::from_secs(30), "members ACTIVE", || async {
                let list = c.tracker.list_storages("group1", None).await.ok()?;
                ips.iter()
                    .all(|ip| list.iter().any(|s| s.id == *ip && s.status == fdfs_core::tracker::status::ACTIVE))
                    .then_some(list)
            })
            .await
        }
    };
    active(&["10.88.1.2", "10.88.2.2"]).await;
    let r = upload_and_see_replicated(&c, "10.88.2.2:23000", b"across hosts").await;

    // B's host gets a new address; B comes back on it with the same data.
    b.stop();
    assert!(ip(&["netns", "exec", "fdfs-b", "ip", "addr", "add", "10.88.2.3/24", "dev", "fdfsn2"]));
    std::fs::write(&conf_b, std::fs::read_to_string(&conf_b).unwrap().replace("10.88.2.2", "10.88.2.3")).unwrap();
    let mut b = Daemon::start_in_netns("fdfs-b", "fdfs_storaged", &conf_b, &db.path().join("storage"));
    let list = active(&["10.88.1.2", "10.88.2.3"]).await;
    assert!(
        list.iter().any(|s| s.id == "10.88.2.2" && s.status == fdfs_core::tracker::status::IP_CHANGED),
        "the old address is kept as IP_CHANGED, no second node: {list:?}"
    );
    upload_and_see_replicated(&c, "10.88.2.3:23000", b"after the move").await;
    assert_eq!(c.storage.download("10.88.2.3:23000", "group1", &r.filename, 0, 0).await.unwrap(), b"across hosts"[..]);
    let log = std::fs::read_to_string(da.path().join("storage/logs/storaged.log")).unwrap();
    assert!(!log.contains("sync to 10.88.2.3: new mark"), "A continued from its renamed mark");
    a.stop();
    b.stop();
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", forward.trim());
}
