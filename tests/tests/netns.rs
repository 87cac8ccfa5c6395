//! Separate hosts, made by the test with network namespaces and veth pairs (root with
//! CAP_NET_ADMIN, as in CI; skipped with a message otherwise): a tracker on the host, storage A
//! in namespace `a` (10.88.1.2) and storage B in `b` (10.88.2.2), replicating through the
//! host's routing; then B's host gets another address (10.88.2.3) and B comes back on it with
//! its identity and data, A continuing its replication from its mark. And a storage behind NAT
//! (a router namespace masquerading its private network and forwarding the storage port), known
//! by its public address through storage IDs, as C's storage_ids.conf serves NAT.

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
    upload_and_see_replicated_from(c, "10.88.1.2:23000", to, data).await
}

/// Uploads `data` to `from` and waits until the storage at `to` serves it.
async fn upload_and_see_replicated_from(
    c: &fdfs_core::client::Client,
    from: &str,
    to: &str,
    data: &[u8],
) -> fdfs_core::protocol::storage::FileIdResp {
    let r = c.storage.upload(from, UploadKind::Normal, -1, "txt", Content::Bytes(data)).await.unwrap();
    eventually(Duration::from_secs(30), &format!("replicated to {to}"), || async {
        (c.storage.download(to, "group1", &r.filename, 0, 0).await.ok()? == data).then_some(())
    })
    .await;
    r
}

/// The tests here change the host's forwarding setting and routes: one at a time.
static HOST_NETWORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn storages_on_separate_hosts_replicate_and_one_moves_to_a_new_address() {
    let _one_at_a_time = HOST_NETWORK.lock().await;
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

/// Runs `nft` in namespace `ns` with one command.
fn nft(ns: &str, command: &str) -> bool {
    Command::new("ip").args(["netns", "exec", ns, "nft", command]).status().is_ok_and(|st| st.success())
}

/// Storage B sits behind a NAT router: its own address is private (10.89.0.2), the router
/// masquerades what it sends and forwards port 23000 of its public address (10.88.6.2) to it.
/// storage_ids.conf names B by that public address (C's answer for NAT and containers): the
/// tracker knows B by it, clients and A reach B through it, and B's connections arrive from it.
#[tokio::test]
async fn a_storage_behind_nat_is_known_and_reached_by_its_public_address() {
    let _one_at_a_time = HOST_NETWORK.lock().await;
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIPPED: nft (nftables) is not installed");
        return;
    }
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let mut hosts = Hosts { names: Vec::new() };
    let made = hosts.add("na", 5) && hosts.add("rt", 6) && std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").is_ok();
    if !made {
        eprintln!("SKIPPED: cannot make network namespaces here (needs root with CAP_NET_ADMIN)");
        return;
    }
    // The private side: namespace fdfs-nb behind the router namespace fdfs-rt.
    hosts.names.push("fdfs-nb".into());
    let private = ip(&["netns", "add", "fdfs-nb"])
        && ip(&[
            "-n", "fdfs-rt", "link", "add", "fdfsr0", "type", "veth", "peer", "name", "fdfsb0", "netns", "fdfs-nb",
        ])
        && ip(&["-n", "fdfs-rt", "addr", "add", "10.89.0.1/24", "dev", "fdfsr0"])
        && ip(&["-n", "fdfs-rt", "link", "set", "fdfsr0", "up"])
        && ip(&["-n", "fdfs-nb", "addr", "add", "10.89.0.2/24", "dev", "fdfsb0"])
        && ip(&["-n", "fdfs-nb", "link", "set", "fdfsb0", "up"])
        && ip(&["-n", "fdfs-nb", "link", "set", "lo", "up"])
        && ip(&["-n", "fdfs-nb", "route", "add", "default", "via", "10.89.0.1"])
        && Command::new("ip")
            .args(["netns", "exec", "fdfs-rt", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            .status()
            .is_ok_and(|st| st.success());
    let nat = private
        && nft("fdfs-rt", "add table ip nat")
        && nft("fdfs-rt", "add chain ip nat pre { type nat hook prerouting priority -100 ; }")
        && nft("fdfs-rt", "add chain ip nat post { type nat hook postrouting priority 100 ; }")
        && nft("fdfs-rt", "add rule ip nat pre iifname fdfsn6 ip daddr 10.88.6.2 tcp dport 23000 dnat to 10.89.0.2")
        && nft("fdfs-rt", "add rule ip nat post oifname fdfsn6 ip saddr 10.89.0.0/24 masquerade");
    if !nat {
        eprintln!("SKIPPED: the kernel here does not do NAT in a namespace");
        return;
    }
    let ids_dir = tempfile::tempdir().unwrap();
    let ids = ids_dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 10.88.5.2\n100002 group1 10.88.6.2\n").unwrap();
    let tracker = TrackerProc::start(&format!(
        "bind_addr =\nport = 22198\nuse_storage_id = true\nstorage_ids_filename = {}\nid_type_in_filename = id\n",
        ids.display()
    ));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Daemon::start_in_netns(
        "fdfs-na",
        "fdfs_storaged",
        &storage_conf(da.path(), "10.88.5.2", "10.88.5.1:22198"),
        &da.path().join("storage"),
    );
    let mut b = Daemon::start_in_netns(
        "fdfs-nb",
        "fdfs_storaged",
        &storage_conf(db.path(), "10.89.0.2", "10.88.6.1:22198"),
        &db.path().join("storage"),
    );
    let c = client_for(&tracker.addr());
    let list = eventually(Duration::from_secs(30), "both ACTIVE by their IDs", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        let active = |id: &str| list.iter().any(|s| s.id == id && s.status == fdfs_core::tracker::status::ACTIVE);
        (active("100001") && active("100002")).then_some(list)
    })
    .await;
    let nb = list.iter().find(|s| s.id == "100002").unwrap();
    assert_eq!(nb.ip, "10.88.6.2", "B is known by its public address, not 10.89.0.2: {list:?}");
    // Through the NAT both ways: to B (forwarded port), and from B to A (masqueraded).
    let to_b = c.storage.upload("10.88.6.2:23000", UploadKind::Normal, -1, "txt", Content::Bytes(b"via nat")).await;
    let to_b = to_b.unwrap();
    eventually(Duration::from_secs(30), "B's upload replicated to A", || async {
        (c.storage.download("10.88.5.2:23000", "group1", &to_b.filename, 0, 0).await.ok()? == b"via nat"[..])
            .then_some(())
    })
    .await;
    upload_and_see_replicated_from(&c, "10.88.5.2:23000", "10.88.6.2:23000", b"to the nat'd one").await;
    let id = fdfs_core::file_id::FileId::parse(&format!("group1/{}", to_b.filename)).unwrap();
    let servers = c.tracker.query_fetch_all(&id).await.unwrap().servers;
    assert!(servers.iter().any(|s| s.ip == "10.88.6.2"), "clients are sent to B's public address: {servers:?}");
    a.stop();
    b.stop();
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", forward.trim());
}
