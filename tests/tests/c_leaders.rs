//! One leader in a tracker set of a C FastDFS 6.16.1 tracker and ours (PROTOCOL.md §7.5), with
//! the real C daemons of `shared/reference/`. Each test prints SKIPPED and passes when the
//! archive is absent.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_e2e::{c_fastdfs_bin, common_free_port, eventually, CDaemon, StorageProc, TrackerProc};

/// Whether the tracker at `addr` says it leads (64 TRACKER_GET_STATUS); `None` when it does not
/// answer one (down, or ENOENT: no groups yet).
fn claims_lead(addr: &str) -> Option<bool> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let (status, body) = fdfs_e2e::raw_exchange(&mut s, 64, &[]);
    (status == 0).then(|| body.first() == Some(&1))
}

/// Samples both trackers every 250 ms for `how_long`; panics unless `lead` said it leads and
/// `follow` did not every time.
async fn leadership_holds(lead: &str, follow: &str, how_long: Duration) {
    let until = std::time::Instant::now() + how_long;
    while std::time::Instant::now() < until {
        let (l, f) = (claims_lead(lead), claims_lead(follow));
        assert_eq!(l, Some(true), "{lead} leads");
        assert_ne!(f, Some(true), "{follow} claims the lead beside {lead}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The split brain of #26: our tracker, started next to a C tracker that leads, made itself a
/// second leader at once (it knew no other tracker yet) and never checked again. Now it elects
/// only once a storage has named the tracker set, and then follows the C leader.
#[tokio::test]
async fn our_tracker_started_beside_a_c_leader_follows_it() {
    let Some(bin) = c_fastdfs_bin("our_tracker_started_beside_a_c_leader_follows_it") else { return };
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.100", "");
    // A C tracker without groups refuses JOINs while a tracker they list is down (it wants to
    // copy that one's state first): the first storage knows only the C tracker.
    let _first = StorageProc::start(&c_tracker.addr, "127.0.0.102", "").await;
    eventually(Duration::from_secs(30), "the C tracker leads", || async {
        claims_lead(&c_tracker.addr)?.then_some(())
    })
    .await;

    let tracker = TrackerProc::start("bind_addr = 127.0.0.101\n");
    let ours = tracker.addr();
    // Ours leads at once if it elects before it knows the tracker set.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Another group: a group's members share one port.
    let both = format!("group_name = group2\ntracker_server = {}\ntracker_server = {ours}\n", c_tracker.addr);
    let storage = StorageProc::start(&c_tracker.addr, "127.0.0.99", &both).await;
    storage.wait_active(&ours).await;
    leadership_holds(&c_tracker.addr, &ours, Duration::from_secs(8)).await;
    let mut c =
        fdfs_core::client::Connection::connect(&ours, Duration::from_secs(2), Duration::from_secs(5)).await.unwrap();
    let leader = c.call(fdfs_core::protocol::Command::ServerGetLeader, &[]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&leader), c_tracker.addr, "our tracker follows the C leader");
}

/// Two trackers that each lead alone (each has its own storages) meet through a storage that
/// reports to both. That storage sees two leaders and tells both to elect again (68
/// NOTIFY_RESELECT_LEADER, as C storages do); they agree on one. `c_bridge`: the storage that
/// meets both is the C storage (our tracker must honour 68) or ours (it must send it). The C
/// tracker's address is the greater of the two.
async fn two_leaders_meet(c_bridge: bool, ips: [&str; 5]) {
    let test = if c_bridge { "a_c_storage_heals_a_split_brain" } else { "our_storage_heals_a_split_brain" };
    let Some(bin) = c_fastdfs_bin(test) else { return };
    let [c_ip, our_ip, a_ip, b_ip, bridge_ip] = ips;
    let c_tracker = CDaemon::tracker(&bin, c_ip, "");
    let tracker = TrackerProc::start(&format!("bind_addr = {our_ip}\n"));
    let ours = tracker.addr();
    let _a = StorageProc::start(&c_tracker.addr, a_ip, "group_name = group1\n").await;
    let _b = StorageProc::start(&ours, b_ip, "group_name = group2\n").await;
    eventually(Duration::from_secs(30), "both trackers lead, each alone", || async {
        (claims_lead(&c_tracker.addr)? && claims_lead(&ours)?).then_some(())
    })
    .await;

    let both = format!("group_name = group3\ntracker_server = {}\ntracker_server = {ours}\n", c_tracker.addr);
    // Kept running until the end (dropping either stops it).
    let _bridge: (Option<CDaemon>, Option<StorageProc>) = if c_bridge {
        let port = common_free_port(&[bridge_ip]);
        (Some(CDaemon::storage(&bin, &c_tracker.addr, "group3", bridge_ip, port, &both)), None)
    } else {
        (None, Some(StorageProc::start(&c_tracker.addr, bridge_ip, &both).await))
    };
    let leader = eventually(Duration::from_secs(60), "one leader", || async {
        match (claims_lead(&c_tracker.addr)?, claims_lead(&ours)?) {
            (true, false) => Some((c_tracker.addr.clone(), ours.clone())),
            (false, true) => Some((ours.clone(), c_tracker.addr.clone())),
            _ => None,
        }
    })
    .await;
    // Both stepped down and elected afresh: equal running times (rounded to 300 s) and no
    // restart gap leave the greater IP, the C tracker's. Had ours kept the lead (68 ignored),
    // the C tracker would have followed it.
    assert_eq!(leader.0, c_tracker.addr, "the leader a fresh election picks");
    leadership_holds(&leader.0, &leader.1, Duration::from_secs(8)).await;
}

#[tokio::test]
async fn a_c_storage_heals_a_split_brain() {
    two_leaders_meet(true, ["127.0.0.104", "127.0.0.103", "127.0.0.105", "127.0.0.106", "127.0.0.107"]).await;
}

#[tokio::test]
async fn our_storage_heals_a_split_brain() {
    two_leaders_meet(false, ["127.0.0.109", "127.0.0.108", "127.0.0.110", "127.0.0.111", "127.0.0.112"]).await;
}

/// A tracker set of the C tracker and ours, with a C storage and ours in one group reporting to
/// both: one leader; when it stops the other leads, clients listing both keep uploading and
/// both members keep replicating; then the same the other way round.
#[tokio::test]
async fn leadership_fails_over_between_a_c_tracker_and_ours_both_ways() {
    let Some(bin) = c_fastdfs_bin("leadership_fails_over_between_a_c_tracker_and_ours_both_ways") else { return };
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.125", "");
    let our_port = common_free_port(&["127.0.0.126"]);
    let mut tracker = TrackerProc::start(&format!("bind_addr = 127.0.0.126\nport = {our_port}\n"));
    let ours = tracker.addr();
    let both = format!("tracker_server = {}\ntracker_server = {ours}\n", c_tracker.addr);
    let port = common_free_port(&["127.0.0.127", "127.0.0.128"]);
    let our_storage = StorageProc::start(&ours, "127.0.0.127", &format!("port = {port}\n{both}")).await;
    let _c_storage = CDaemon::storage(&bin, &c_tracker.addr, "group1", "127.0.0.128", port, &both);
    let mut config = fdfs_core::config::ClientConfig::for_tracker(fdfs_core::config::ServerAddr::parse(&ours).unwrap());
    config.tracker_servers.push(fdfs_core::config::ServerAddr::parse(&c_tracker.addr).unwrap());
    config.use_connection_pool = false;
    let client = fdfs_core::client::Client::new(&config);
    let one_leader = |what: &'static str| {
        let (c_addr, ours) = (c_tracker.addr.clone(), ours.clone());
        async move {
            eventually(Duration::from_secs(60), what, || async {
                match (claims_lead(&c_addr), claims_lead(&ours)) {
                    (Some(true), Some(false) | None) => Some(c_addr.clone()),
                    (Some(false) | None, Some(true)) => Some(ours.clone()),
                    _ => None,
                }
            })
            .await
        }
    };
    // Every upload, through whichever tracker answers, reaches both members.
    let upload_everywhere = |tag: u8| {
        let client = &client;
        let members = [our_storage.addr(), format!("127.0.0.128:{port}")];
        async move {
            let data = vec![tag; 5000];
            let id = eventually(Duration::from_secs(30), "an upload through the tracker set", || async {
                client.upload(UploadKind::Normal, None, "bin", Content::Bytes(&data)).await.ok()
            })
            .await;
            let name = id.split_once('/').unwrap().1.to_owned();
            for addr in &members {
                eventually(Duration::from_secs(30), &format!("upload {tag} on {addr}"), || async {
                    (client.storage.download(addr, "group1", &name, 0, 0).await.ok()? == data).then_some(())
                })
                .await;
            }
        }
    };
    eventually(Duration::from_secs(60), "both storages ACTIVE at both trackers", || async {
        for t in [&c_tracker.addr, &ours] {
            let list = fdfs_e2e::client_for(t).tracker.list_storages("group1", None).await.ok()?;
            let active = list.iter().filter(|s| s.status == fdfs_core::tracker::status::ACTIVE).count();
            (active == 2).then_some(())?;
        }
        Some(())
    })
    .await;
    let first = one_leader("one leader of the two").await;
    upload_everywhere(1).await;
    // The leader's view of the set (96, what fdfs_tracker_stat -d prints): the follower joined
    // it (58) with its version and start time, and pings it.
    let follower = if first == ours { c_tracker.addr.clone() } else { ours.clone() };
    eventually(Duration::from_secs(20), "the follower known to the leader", || async {
        let stats = fdfs_e2e::client_for(&first)
            .tracker
            .tracker_cluster_stat(&fdfs_core::protocol::tracker::TrackerClusterStatReq::default())
            .await
            .ok()?;
        let f = stats.trackers.iter().find(|s| s.host == follower)?;
        (f.is_active == 1 && f.version == "6.16.1" && f.up_time > 0).then_some(())
    })
    .await;

    // The leader stops: the other leads, and the cluster goes on.
    let c_first = first == c_tracker.addr;
    if c_first {
        c_tracker.stop();
    } else {
        tracker.daemon.stop();
    }
    let second = one_leader("the other tracker leads").await;
    assert_ne!(second, first, "the survivor leads");
    eprintln!("leader {first}, then {second}");
    upload_everywhere(2).await;

    // The first comes back (as a follower), then the second stops: the first leads again.
    if c_first {
        c_tracker.start_again();
    } else {
        tracker.restart();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(one_leader("still one leader").await, second, "the one that came back follows");
    if c_first {
        tracker.daemon.stop();
    } else {
        c_tracker.stop();
    }
    assert_eq!(one_leader("the first leads again").await, first);
    upload_everywhere(3).await;
}
