//! Real C FastDFS 6.16.1 daemons (`shared/reference/`) beside ours. Each test prints SKIPPED and
//! passes when the archive is absent.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::tracker::status;
use fdfs_e2e::{c_fastdfs_bin, common_free_port, eventually, CDaemon, StorageProc, TrackerProc};

/// A C member in trunk mode asks our trunk server for its slots (27/28). C makes that connection
/// without binding it, so on one host it arrives from the host's address, not the member's:
/// our peer checks must take it (they refused it with EACCES, and the C storage failed the
/// upload). With `delete_unused_trunk_files`, once every file is deleted our copy of the trunk
/// file goes; the C member refuses our list of retired files (121) and keeps its copy, and
/// the group goes on working.
#[tokio::test]
async fn a_c_member_takes_trunk_slots_from_our_trunk_server() {
    let Some(bin) = c_fastdfs_bin("a_c_member_takes_trunk_slots_from_our_trunk_server") else { return };
    let tracker = TrackerProc::start(
        "bind_addr = 127.0.0.74\nuse_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\n\
         trunk_file_size = 4MB\ntrunk_alloc_alignment_size = 256\ndelete_unused_trunk_files = true\n",
    );
    let t = tracker.addr();
    let port = common_free_port(&["127.0.0.75", "127.0.0.76"]);
    let ours = StorageProc::start(&t, "127.0.0.75", &format!("port = {port}\n")).await;
    let c = fdfs_e2e::client_for(&t);
    let data = vec![5u8; 3000];
    let mut names = Vec::new();
    loop {
        let r = c.storage.upload(&ours.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
        let trunk = r.filename.len() == 60;
        names.push((r.filename, data.clone()));
        if trunk {
            break;
        }
        assert!(names.len() < 300, "our storage never became the trunk server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let theirs = CDaemon::storage(&bin, &t, "group1", "127.0.0.76", port, "");
    eventually(Duration::from_secs(60), "the C storage ACTIVE", || async {
        let list = c.tracker.list_storages("group1", Some("127.0.0.76")).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    for i in 0..10u8 {
        let data = vec![i; 3000];
        let r = eventually(Duration::from_secs(20), "an upload to the C storage", || async {
            c.storage.upload(&theirs.addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()
        })
        .await;
        assert_eq!(r.filename.len(), 60, "{}: in a trunk slot our trunk server handed out", r.filename);
        names.push((r.filename, data));
    }
    for (name, data) in &names {
        for addr in [&ours.addr(), &theirs.addr] {
            eventually(Duration::from_secs(20), "every file on both members", || async {
                (c.storage.download(addr, "group1", name, 0, 0).await.ok()? == *data).then_some(())
            })
            .await;
        }
    }

    // Every file deleted, through both: the trunk file goes from our disk, stays on C's.
    let in_trunk: std::collections::BTreeSet<std::path::PathBuf> =
        names.iter().filter(|(n, _)| n.len() == 60).map(|(n, _)| trunk_file_of(n)).collect();
    assert_eq!(in_trunk.len(), 1, "the slots are in one trunk file: {in_trunk:?}");
    let rel = in_trunk.into_iter().next().unwrap();
    let trunk_file = |base: &std::path::Path| base.join(&rel);
    let theirs_base = theirs.dir.path().join("base");
    assert!(trunk_file(&theirs_base).exists(), "C's copy of the trunk file");
    for (i, (name, _)) in names.iter().enumerate() {
        let via = if i % 2 == 0 { ours.addr() } else { theirs.addr.clone() };
        c.storage.delete(&via, "group1", name).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
    let mine = trunk_file(&ours.base());
    eventually(Duration::from_secs(60), "our copy of the emptied trunk file removed", || async {
        (!mine.exists()).then_some(())
    })
    .await;
    let log = ours.base().join("logs/storaged.log");
    eventually(Duration::from_secs(20), "the C member's refusal logged", || async {
        std::fs::read_to_string(&log).ok()?.contains("refused retired trunk files").then_some(())
    })
    .await;
    assert!(trunk_file(&theirs_base).exists(), "the C member keeps its copy");
    // Both go on taking small files into new trunk slots, replicated both ways.
    for (i, addr) in [ours.addr(), theirs.addr.clone()].iter().enumerate() {
        let data = vec![40 + i as u8; 2000];
        let r = c.storage.upload(addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.unwrap();
        assert_eq!(r.filename.len(), 60, "{}", r.filename);
        for from in [ours.addr(), theirs.addr.clone()] {
            eventually(Duration::from_secs(20), "a new file on both members", || async {
                (c.storage.download(&from, "group1", &r.filename, 0, 0).await.ok()? == data).then_some(())
            })
            .await;
        }
    }
}

/// The trunk file (relative to its store path) holding trunk name `name`.
fn trunk_file_of(name: &str) -> std::path::PathBuf {
    let r = fdfs_core::file_id::RemoteFilename::parse(name, Some(1)).unwrap();
    let id = r.trunk_location().expect("a trunk name").trunk_id;
    format!("data/{:02X}/{:02X}/{id:06}", r.high, r.low).into()
}

/// A storage_ids.conf of `lines` in `dir`, and the config lines (tracker.conf or client.conf)
/// that use it.
fn id_table(dir: &std::path::Path, lines: &str) -> String {
    let file = dir.join("storage_ids.conf");
    std::fs::write(&file, lines).unwrap();
    format!("use_storage_id = true\nstorage_ids_filename = {}\n", file.display())
}

/// Storage-ID mode under the C 6.16.1 tracker: our storage and our client fetch its ID table
/// (69) in the form 6.16.1 accepts (5 bytes; the 4-byte classic form got EINVAL at every start).
#[tokio::test]
async fn our_storage_and_client_fetch_the_id_table_from_a_c_tracker() {
    let Some(bin) = c_fastdfs_bin("our_storage_and_client_fetch_the_id_table_from_a_c_tracker") else { return };
    let port = common_free_port(&["127.0.0.77"]);
    let ids = tempfile::tempdir().unwrap();
    let ids_conf = id_table(ids.path(), &format!("100077 group1 127.0.0.77:{port}\n"));
    let tracker = CDaemon::tracker(&bin, "127.0.0.78", &format!("{ids_conf}id_type_in_filename = id\n"));
    let ours = StorageProc::start_as(&tracker.addr, "127.0.0.77", "100077", &format!("port = {port}\n")).await;
    let log = std::fs::read_to_string(ours.base().join("logs/storaged.log")).unwrap();
    assert!(log.contains("storage ID 100077 (from the tracker's storage_ids.conf)"), "our storage log:\n{log}");
    assert!(!log.contains("fetching the storage ID table"), "our storage log:\n{log}");
    let c = fdfs_e2e::client_for(&tracker.addr);
    let table = c.tracker.storage_ids().await.unwrap();
    assert!(table.iter().any(|l| l.starts_with("100077 group1 127.0.0.77")), "{table:?}");
    // What the fallback in the client and the module rests on (the C tracker logs nothing when
    // it refuses): 6.16.1 takes the 5-byte form and refuses the 4-byte one with EINVAL.
    let (new, _) = fdfs_e2e::raw_request(&tracker.addr, 69, &[0, 0, 0, 0, 0]);
    assert_eq!(new, 0, "the 5-byte form is answered");
    let (old, _) = fdfs_e2e::raw_request(&tracker.addr, 69, &[0, 0, 0, 0]);
    assert_eq!(old, 22, "the 4-byte form is refused with EINVAL");

    // fdfs_file_info of a name that carries the storage ID: the source address comes from the
    // client's own table (use_storage_id, storage_ids_filename), as C's tool finds it; without
    // one, from the storage (GET FROM SERVER). Byte for byte what C's tool prints (CRC32 in
    // lower-case hex, a closing blank line).
    let up = c.storage.upload(&ours.addr(), UploadKind::Normal, -1, "txt", Content::Bytes(b"hello")).await.unwrap();
    let id = up.file_id();
    for with_table in [true, false] {
        let conf = ids.path().join(format!("client-{with_table}.conf"));
        let text =
            format!("tracker_server = {}\nbase_path = /tmp\n{}", tracker.addr, if with_table { &ids_conf } else { "" });
        std::fs::write(&conf, text).unwrap();
        let run = |program: std::path::PathBuf| {
            let out = std::process::Command::new(program).arg(&conf).arg(&id).output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (theirs, mine) = (run(bin.join("fdfs_file_info")), run(fdfs_e2e::bin("fdfs_file_info")));
        assert_eq!(mine, theirs, "fdfs_file_info {id}, table: {with_table}");
        assert!(mine.1.starts_with(&format!("GET FROM SERVER: {}\n", !with_table)), "{}", mine.1);
        assert!(mine.1.contains("source storage id: 100077\nsource ip address: 127.0.0.77\n"), "{}", mine.1);
    }
}

/// Idle connections as C 6.16.1 keeps them: one that has served a request stays open however
/// long it idles (libfdfsclient's and the PHP extension's pools, C storages' sync connections
/// rely on it: ours closed after `network_timeout` and their next call failed with errno 107,
/// then SIGPIPE); one that never sent a request is closed after `network_timeout`. Asserted of
/// the C tracker and storage as of ours, side by side.
#[tokio::test]
async fn idle_connections_are_kept_once_they_served_a_request_as_c_keeps_them() {
    let Some(bin) = c_fastdfs_bin("idle_connections_are_kept_once_they_served_a_request_as_c_keeps_them") else {
        return;
    };
    let timeout = "network_timeout = 2\n";
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.79", timeout);
    let c_port = common_free_port(&["127.0.0.80"]);
    let c_storage = CDaemon::storage(&bin, &c_tracker.addr, "group1", "127.0.0.80", c_port, timeout);
    let tracker = TrackerProc::start(&format!("bind_addr = 127.0.0.81\n{timeout}"));
    let storage = StorageProc::start(&tracker.addr(), "127.0.0.82", timeout).await;
    let servers = [
        ("C tracker", c_tracker.addr.clone()),
        ("C storage", c_storage.addr.clone()),
        ("our tracker", tracker.addr()),
        ("our storage", storage.addr()),
    ];
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        const ACTIVE_TEST: u8 = 111;
        let opened: Vec<_> = servers
            .iter()
            .map(|(name, addr)| {
                let mut used = eventually_connect(addr);
                assert_eq!(fdfs_e2e::raw_exchange(&mut used, ACTIVE_TEST, &[]).0, 0, "{name}: first request");
                (name, used, eventually_connect(addr))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(6));
        for (name, mut used, mut silent) in opened {
            assert_eq!(fdfs_e2e::raw_exchange(&mut used, ACTIVE_TEST, &[]).0, 0, "{name}: a request after 6 s idle");
            silent.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let closed = match silent.read(&mut [0u8; 1]) {
                Ok(n) => n == 0,
                Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            };
            assert!(closed, "{name}: a connection that never sent a request is closed after network_timeout");
        }
    })
    .await
    .unwrap();
}

/// A connection to a daemon that may still be starting (the C daemons return before they listen).
fn eventually_connect(addr: &str) -> std::net::TcpStream {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) if std::time::Instant::now() > until => panic!("connecting to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The C 6.16.1 admin tools and ours print the same, byte for byte, against the C tracker and
/// against ours: `fdfs_monitor` in each of its forms, `fdfs_tracker_stat`, `fdfs_storage_stat`
/// and `fdfs_volumn_stat` with their filters (`-T` without trunk files lists everyone, as C)
/// and usage errors. Only the heartbeat time (it moves between two runs) and each program's
/// own path (in usage texts) are set aside. Our tracker listens on every address and its
/// storage reaches it at one that is on no interface (as through NAT or a VIP): it lists
/// itself once, not also as a follower it does not know is itself.
#[tokio::test]
async fn the_admin_tools_print_what_the_c_ones_print() {
    let Some(bin) = c_fastdfs_bin("the_admin_tools_print_what_the_c_ones_print") else { return };
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.113", "");
    let c_port = common_free_port(&["127.0.0.114"]);
    let _c_storage = CDaemon::storage(&bin, &c_tracker.addr, "group1", "127.0.0.114", c_port, "");
    let tracker = TrackerProc::start("bind_addr =\n");
    let ours = format!("127.0.0.115:{}", tracker.daemon.addr.port());
    let _storage = StorageProc::start(&ours, "127.0.0.116", "").await;
    let c = fdfs_e2e::client_for(&c_tracker.addr);
    eventually(Duration::from_secs(60), "the C storage ACTIVE", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    for (name, addr) in [("C tracker", c_tracker.addr.clone()), ("our tracker", ours)] {
        let conf = dir.path().join(format!("{}.conf", name.replace(' ', "_")));
        std::fs::write(&conf, format!("tracker_server = {addr}\nbase_path = /tmp\n")).unwrap();
        let conf = conf.to_str().unwrap().to_owned();
        // `{conf}` in an argument list stands for the config file.
        let run = |program: std::path::PathBuf, args: &[&str]| {
            let args: Vec<&str> = args.iter().map(|a| if *a == "{conf}" { conf.as_str() } else { a }).collect();
            let out = std::process::Command::new(&program).args(&args).output().unwrap();
            let both = [out.stdout, out.stderr].concat();
            let text = String::from_utf8_lossy(&both).replace(program.to_str().unwrap(), "PROGRAM");
            let text: String =
                text.lines().filter(|l| !l.contains("last_heart_beat_time")).map(|l| format!("{l}\n")).collect();
            (out.status.code(), text)
        };
        let h = format!("-h{addr}");
        let mut forms: Vec<(&str, Vec<&str>)> = [
            vec!["{conf}"],
            vec!["{conf}", "list", "group1"],
            vec!["{conf}", &h],
            vec!["{conf}", "-h", &addr, "list"],
            vec!["{conf}", "bogus"],
            vec!["{conf}", "list", "group9"],
        ]
        .into_iter()
        .map(|args| ("fdfs_monitor", args))
        .collect();
        for tool in ["fdfs_tracker_stat", "fdfs_storage_stat", "fdfs_volumn_stat"] {
            for flag in ["-d", "-A", "-N", "-T", "-t", "-Z", "-h"] {
                forms.push((tool, vec!["-c", "{conf}", flag]));
            }
        }
        for (tool, args) in &forms {
            let mut last = None;
            for _ in 0..5 {
                let (theirs, mine) = (run(bin.join(tool), args), run(fdfs_e2e::bin(tool), args));
                if theirs == mine {
                    last = None;
                    break;
                }
                last = Some((theirs, mine));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if let Some((theirs, mine)) = last {
                assert_eq!(mine.1, theirs.1, "{tool} {args:?} against the {name}");
                assert_eq!(mine.0, theirs.0, "exit status of {tool} {args:?} against the {name}");
            }
        }
        // Failures print C's line (C also logs the refusal on stderr); ours exits with the
        // errno where C exits 0.
        let not_logs = |t: String| t.lines().filter(|l| !l.contains("] ERROR - ")).collect::<Vec<_>>().join("\n");
        let (code, out) = run(fdfs_e2e::bin("fdfs_monitor"), &["{conf}", "delete", "groupX"]);
        let (_, c_out) = run(bin.join("fdfs_monitor"), &["{conf}", "delete", "groupX"]);
        assert_eq!(not_logs(out), not_logs(c_out), "delete of an unknown group against the {name}");
        assert_eq!(code, Some(2));
        let (_, trackers) = run(fdfs_e2e::bin("fdfs_tracker_stat"), &["-c", "{conf}"]);
        assert_eq!(trackers.matches("is_leader").count(), 1, "one tracker, listed once:\n{trackers}");
    }
}

/// One group of a C storage and ours, under `tracker`: files uploaded to either are served by
/// both, byte for byte, and a delete on either reaches the other.
async fn a_mixed_group_replicates_both_ways(bin: &std::path::Path, tracker: &str, ips: [&str; 2]) {
    let port = common_free_port(&ips);
    let ours = StorageProc::start(tracker, ips[0], &format!("port = {port}\n")).await;
    let theirs = CDaemon::storage(bin, tracker, "group1", ips[1], port, "");
    let c = fdfs_e2e::client_for(tracker);
    eventually(Duration::from_secs(60), "the C storage ACTIVE", || async {
        let list = c.tracker.list_storages("group1", Some(ips[1])).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    let mut files = Vec::new();
    for i in 0..20u32 {
        let addr = if i % 2 == 0 { ours.addr() } else { theirs.addr.clone() };
        let data: Vec<u8> = (0..(1000 + i * 3000)).map(|j| (j * 31 + i) as u8).collect();
        let r = eventually(Duration::from_secs(20), "an upload", || async {
            c.storage.upload(&addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()
        })
        .await;
        files.push((r.filename, data));
    }
    for (name, data) in &files {
        for addr in [ours.addr(), theirs.addr.clone()] {
            eventually(Duration::from_secs(30), &format!("{name} on {addr}"), || async {
                (c.storage.download(&addr, "group1", name, 0, 0).await.ok()? == *data).then_some(())
            })
            .await;
        }
    }
    // Deletes: the first on ours, the second on the C storage; each goes from both.
    for (i, (name, _)) in files.iter().take(2).enumerate() {
        let at = if i == 0 { ours.addr() } else { theirs.addr.clone() };
        c.storage.delete(&at, "group1", name).await.unwrap();
        for addr in [ours.addr(), theirs.addr.clone()] {
            eventually(Duration::from_secs(30), &format!("{name} deleted on {addr}"), || async {
                c.storage.download(&addr, "group1", name, 0, 0).await.is_err().then_some(())
            })
            .await;
        }
    }
}

#[tokio::test]
async fn a_c_storage_and_ours_in_one_group_under_the_c_tracker() {
    let Some(bin) = c_fastdfs_bin("a_c_storage_and_ours_in_one_group_under_the_c_tracker") else { return };
    let tracker = CDaemon::tracker(&bin, "127.0.0.119", "");
    a_mixed_group_replicates_both_ways(&bin, &tracker.addr, ["127.0.0.120", "127.0.0.121"]).await;
}

#[tokio::test]
async fn a_c_storage_and_ours_in_one_group_under_our_tracker() {
    let Some(bin) = c_fastdfs_bin("a_c_storage_and_ours_in_one_group_under_our_tracker") else { return };
    let tracker = TrackerProc::start("bind_addr = 127.0.0.122\n");
    a_mixed_group_replicates_both_ways(&bin, &tracker.addr(), ["127.0.0.123", "127.0.0.124"]).await;
}

/// Storage-ID mode: 60 GET_MY_IP and 109 GET_GROUP_NAME answered as the C 6.16.1 tracker
/// answers them, from the same storage_ids.conf: a two-address entry gives both addresses
/// (the private one first), an address it does not list gets itself back.
#[tokio::test]
async fn get_my_ip_and_group_name_are_answered_as_the_c_tracker_answers_them() {
    let Some(bin) = c_fastdfs_bin("get_my_ip_and_group_name_are_answered_as_the_c_tracker_answers_them") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = id_table(dir.path(), "100130 group1 127.0.0.130,10.9.9.9\n100131 group2 127.0.0.131\n");
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.132", &conf);
    let tracker = TrackerProc::start(&format!("bind_addr = 127.0.0.133\n{conf}"));
    let group = |name: &str, len: usize| {
        let mut b = name.as_bytes().to_vec();
        b.resize(len, 0);
        b
    };
    let mut v616 = group("group1", 17);
    v616.extend_from_slice(&23000i32.to_be_bytes());
    // 6.16.1 takes only its own 21-byte form of 60 (the 16-byte one of older storages gets
    // EINVAL there; ours serves every generation, and answers it alike: below).
    let requests: Vec<(&str, u8, Vec<u8>)> = vec![
        ("127.0.0.130", 60, v616.clone()),
        ("127.0.0.134", 60, v616.clone()),
        ("127.0.0.131", 109, 23000i32.to_be_bytes().to_vec()),
        ("127.0.0.134", 109, 23000i32.to_be_bytes().to_vec()),
    ];
    let ours = tracker.addr();
    eventually_connect(&c_tracker.addr);
    for (from, cmd, body) in requests {
        let theirs = fdfs_e2e::raw_request_from(from, &c_tracker.addr, cmd, &body);
        let mine = fdfs_e2e::raw_request_from(from, &ours, cmd, &body);
        assert_eq!(
            (mine.0, String::from_utf8_lossy(&mine.1)),
            (theirs.0, String::from_utf8_lossy(&theirs.1)),
            "cmd {cmd} ({} bytes) from {from}",
            body.len()
        );
    }
    let classic = fdfs_e2e::raw_request_from("127.0.0.130", &ours, 60, &group("group1", 16));
    assert_eq!((classic.0, String::from_utf8_lossy(&classic.1).into_owned()), (0, "10.9.9.9,127.0.0.130".into()));
}

/// Storage-ID mode with `group_name` left empty: our storage asks the tracker which group its
/// address and port belong to (109), as the C storage does, under the C tracker and ours.
#[tokio::test]
async fn an_empty_group_name_is_filled_from_the_trackers_id_table() {
    let Some(bin) = c_fastdfs_bin("an_empty_group_name_is_filled_from_the_trackers_id_table") else { return };
    let port = common_free_port(&["127.0.0.135"]);
    let dir = tempfile::tempdir().unwrap();
    let conf = id_table(dir.path(), &format!("100135 group7 127.0.0.135:{port}\n"));
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.136", &conf);
    let tracker = TrackerProc::start(&format!("bind_addr = 127.0.0.137\n{conf}"));
    for t in [c_tracker.addr.clone(), tracker.addr()] {
        let base = tempfile::tempdir().unwrap();
        let storage_conf = base.path().join("storage.conf");
        let b = base.path().display();
        std::fs::write(
            &storage_conf,
            format!(
                "group_name =\nbind_addr = 127.0.0.135\nport = {port}\nbase_path = {b}\nstore_path0 = {b}\n\
                 subdir_count_per_path = 4\ntracker_server = {t}\nheart_beat_interval = 1\nstat_report_interval = 1\n"
            ),
        )
        .unwrap();
        let _storage = fdfs_e2e::Daemon::start("fdfs_storaged", &storage_conf, base.path());
        let c = fdfs_e2e::client_for(&t);
        eventually(Duration::from_secs(30), "our storage ACTIVE in group7", || async {
            let list = c.tracker.list_storages("group7", None).await.ok()?;
            (list.first()?.status == status::ACTIVE && list[0].id == "100135").then_some(())
        })
        .await;
        let log = std::fs::read_to_string(base.path().join("logs/storaged.log")).unwrap();
        assert!(log.contains("group_name group7 (from the tracker's storage_ids.conf)"), "{log}");
    }
}

/// One node swapped in place: a C storage of a two-member C group is stopped and ours started
/// on its very storage.conf, base_path and store path. Every file it held is served with its
/// metadata, its appender file takes more appends, and replication goes on both ways with the
/// C member that stays.
#[tokio::test]
async fn our_storage_takes_over_a_c_storage_in_place() {
    use fdfs_core::protocol::storage::MetaOp;
    let Some(bin) = c_fastdfs_bin("our_storage_takes_over_a_c_storage_in_place") else { return };
    let tracker = CDaemon::tracker(&bin, "127.0.0.138", "");
    let port = common_free_port(&["127.0.0.139", "127.0.0.140"]);
    let swapped = CDaemon::storage(&bin, &tracker.addr, "group1", "127.0.0.139", port, "");
    let stays = CDaemon::storage(&bin, &tracker.addr, "group1", "127.0.0.140", port, "");
    let c = fdfs_e2e::client_for(&tracker.addr);
    let all_active = || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        (list.len() == 2 && list.iter().all(|s| s.status == status::ACTIVE)).then_some(())
    };
    eventually(Duration::from_secs(60), "both C storages ACTIVE", all_active).await;
    let (x, y) = (swapped.addr.clone(), stays.addr.clone());
    let mut files = Vec::new();
    for i in 0..10u32 {
        let at = if i % 2 == 0 { &x } else { &y };
        let data: Vec<u8> = (0..(2000 + i * 7000)).map(|j| (j * 7 + i) as u8).collect();
        let r = c.storage.upload(at, UploadKind::Normal, -1, "jpg", Content::Bytes(&data)).await.unwrap();
        files.push((r.filename, data));
    }
    let meta = vec![(b"width".to_vec(), b"640".to_vec())];
    c.storage.set_metadata(&x, "group1", &files[0].0, &meta, MetaOp::Overwrite).await.unwrap();
    let appender = c.storage.upload(&x, UploadKind::Appender, -1, "log", Content::Bytes(b"first;")).await.unwrap();
    for (name, data) in &files {
        eventually(Duration::from_secs(30), "every file on both C members", || async {
            let on_x = c.storage.download(&x, "group1", name, 0, 0).await.ok()? == *data;
            let on_y = c.storage.download(&y, "group1", name, 0, 0).await.ok()? == *data;
            (on_x && on_y).then_some(())
        })
        .await;
    }

    // The swap: the C daemon stops, ours starts on its config and data.
    swapped.stop();
    let base = swapped.dir.path().join("base");
    let _ours = fdfs_e2e::Daemon::start("fdfs_storaged", &swapped.conf, &base);
    eventually(Duration::from_secs(60), "ours ACTIVE in the C one's place", all_active).await;
    for (name, data) in &files {
        assert_eq!(&c.storage.download(&x, "group1", name, 0, 0).await.unwrap(), data, "{name} served by ours");
    }
    assert_eq!(c.storage.get_metadata(&x, "group1", &files[0].0).await.unwrap(), meta);
    c.storage.append(&x, &appender.filename, Content::Bytes(b"second")).await.unwrap();
    assert_eq!(&c.storage.download(&x, "group1", &appender.filename, 0, 0).await.unwrap()[..], b"first;second");
    // Replication both ways with the C member that stays.
    let from_ours = c.storage.upload(&x, UploadKind::Normal, -1, "jpg", Content::Bytes(b"from ours")).await.unwrap();
    let from_c = c.storage.upload(&y, UploadKind::Normal, -1, "jpg", Content::Bytes(b"from C")).await.unwrap();
    for (addr, name, data) in [
        (&y, &from_ours.filename, &b"from ours"[..]),
        (&x, &from_c.filename, &b"from C"[..]),
        (&y, &appender.filename, &b"first;second"[..]),
    ] {
        eventually(Duration::from_secs(30), &format!("{name} on {addr}"), || async {
            (c.storage.download(addr, "group1", name, 0, 0).await.ok()? == data).then_some(())
        })
        .await;
    }
}

/// Trunk mode under `tracker` (C's or ours) with a C storage and ours: ours first a trunk member
/// of the C trunk server (it asks it for slots, 27/28), then the role moved to ours and back
/// (`set_trunk_server`, allowed once the current trunk server is not ACTIVE, as C), each
/// continuing the other's trunk files and free space: across the rounds no two files share a
/// slot, and every file is read back from both members at the end.
async fn trunk_role_moves_both_ways(bin: &std::path::Path, tracker: &str, [c_ip, our_ip]: [&'static str; 2]) {
    let port = common_free_port(&[c_ip, our_ip]);
    let theirs = CDaemon::storage(bin, tracker, "group1", c_ip, port, "");
    let c = fdfs_e2e::client_for(tracker);
    let trunk_server_is = |ip: &'static str| {
        let c = &c;
        async move {
            eventually(Duration::from_secs(60), &format!("{ip} the trunk server"), || async {
                let list = c.tracker.list_storages("group1", Some(ip)).await.ok()?;
                (list.first()?.status == status::ACTIVE && list[0].if_trunk_server).then_some(())
            })
            .await;
        }
    };
    trunk_server_is(c_ip).await;
    let mut ours = StorageProc::start(tracker, our_ip, &format!("port = {port}\n")).await;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let upload_to = |addr: String, n: u32, tag: u32| {
        let c = &c;
        async move {
            let mut out = Vec::new();
            for i in 0..n {
                let data: Vec<u8> = (0..(400 + i * 131 + tag)).map(|j| (j * 11 + i + tag) as u8).collect();
                let r = eventually(Duration::from_secs(30), "a trunk upload", || async {
                    let r = c.storage.upload(&addr, UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()?;
                    (r.filename.len() == 60).then_some(r)
                })
                .await;
                out.push((r.filename, data));
            }
            out
        }
    };
    files.extend(upload_to(ours.addr(), 10, 1).await);
    files.extend(upload_to(theirs.addr.clone(), 10, 2).await);

    // C → ours: the C trunk server stops (OFFLINE at once), the role is given to ours.
    theirs.stop();
    eventually(Duration::from_secs(30), "the role given to ours", || async {
        c.tracker.set_trunk_server("group1", our_ip).await.ok()
    })
    .await;
    trunk_server_is(our_ip).await;
    files.extend(upload_to(ours.addr(), 10, 3).await);
    theirs.start_again();
    eventually(Duration::from_secs(60), "the C storage back", || async {
        let list = c.tracker.list_storages("group1", Some(c_ip)).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    files.extend(upload_to(theirs.addr.clone(), 10, 4).await);

    // Ours → C: ours stops, the role goes back to the C storage; ours returns as a member.
    ours.daemon.stop();
    eventually(Duration::from_secs(30), "the role given back to C", || async {
        c.tracker.set_trunk_server("group1", c_ip).await.ok()
    })
    .await;
    trunk_server_is(c_ip).await;
    files.extend(upload_to(theirs.addr.clone(), 10, 5).await);
    ours.restart(tracker, false).await;
    files.extend(upload_to(ours.addr(), 10, 6).await);

    let mut slots = std::collections::HashSet::new();
    for (name, data) in &files {
        let remote = fdfs_core::file_id::FileId::parse(&format!("group1/{name}")).unwrap().remote;
        let loc = remote.trunk_location().expect("a trunk name");
        assert!(slots.insert((remote.high, remote.low, loc.trunk_id, loc.offset)), "{name}: a slot given twice");
        for addr in [ours.addr(), theirs.addr.clone()] {
            eventually(Duration::from_secs(30), &format!("{name} on {addr}"), || async {
                (c.storage.download(&addr, "group1", name, 0, 0).await.ok()? == *data).then_some(())
            })
            .await;
        }
    }
}

const TRUNK_FILES: &str = "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
                           trunk_alloc_alignment_size = 256\n";

#[tokio::test]
async fn the_trunk_server_role_moves_between_a_c_storage_and_ours_under_the_c_tracker() {
    let Some(bin) = c_fastdfs_bin("the_trunk_server_role_moves_between_a_c_storage_and_ours_under_the_c_tracker")
    else {
        return;
    };
    let tracker = CDaemon::tracker(&bin, "127.0.0.144", TRUNK_FILES);
    trunk_role_moves_both_ways(&bin, &tracker.addr, ["127.0.0.145", "127.0.0.146"]).await;
}

#[tokio::test]
async fn the_trunk_server_role_moves_between_a_c_storage_and_ours_under_our_tracker() {
    let Some(bin) = c_fastdfs_bin("the_trunk_server_role_moves_between_a_c_storage_and_ours_under_our_tracker") else {
        return;
    };
    let tracker = TrackerProc::start(&format!("bind_addr = 127.0.0.147\n{TRUNK_FILES}"));
    trunk_role_moves_both_ways(&bin, &tracker.addr(), ["127.0.0.148", "127.0.0.149"]).await;
}

/// C 6.16.1's `fdfs_exporter` (Prometheus metrics from the trackers' answers) against our
/// tracker and storage gives the same series as against the C tracker and storage: the same
/// metric names and label sets, the addresses aside.
#[tokio::test]
async fn the_c_exporter_reads_our_daemons_as_it_reads_the_c_ones() {
    let Some(bin) = c_fastdfs_bin("the_c_exporter_reads_our_daemons_as_it_reads_the_c_ones") else { return };
    let c_tracker = CDaemon::tracker(&bin, "127.0.0.153", "");
    let c_port = common_free_port(&["127.0.0.154"]);
    let _c_storage = CDaemon::storage(&bin, &c_tracker.addr, "group1", "127.0.0.154", c_port, "");
    let tracker = TrackerProc::start("bind_addr = 127.0.0.155\n");
    let _storage = StorageProc::start(&tracker.addr(), "127.0.0.156", "").await;
    let c = fdfs_e2e::client_for(&c_tracker.addr);
    eventually(Duration::from_secs(60), "the C storage ACTIVE", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut series = Vec::new();
    for (name, addr, ip) in [("c", c_tracker.addr.clone(), "127.0.0.153"), ("ours", tracker.addr(), "127.0.0.155")] {
        let conf = dir.path().join(format!("{name}.conf"));
        std::fs::write(&conf, format!("tracker_server = {addr}\nbase_path = /tmp\n")).unwrap();
        let port = common_free_port(&[ip]);
        // Its config file, not `-f`/`-B`/`-P`: 6.16.1's exporter aborts (free(): invalid
        // pointer) when the client config is given with `-f`.
        let exporter_conf = dir.path().join(format!("{name}-exporter.conf"));
        let text = format!("bind_addr = {ip}\nport = {port}\nfdfs_client_cfg = {}\n", conf.display());
        std::fs::write(&exporter_conf, text).unwrap();
        let mut exporter = std::process::Command::new(bin.join("fdfs_exporter"))
            .arg("-c")
            .arg(&exporter_conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let body = eventually(Duration::from_secs(20), "the exporter's metrics", || async {
            std::net::TcpStream::connect((ip, port)).ok()?;
            let r = fdfs_e2e::get(&format!("{ip}:{port}"), "/metrics");
            let text = String::from_utf8_lossy(&r.body).into_owned();
            (r.status == 200 && text.contains("group1")).then_some(text)
        })
        .await;
        let _ = exporter.kill();
        let _ = exporter.wait();
        // A series is its name and labels; addresses, versions and values differ by cluster.
        let mut names: Vec<String> = body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let l = if l.starts_with('#') { l } else { l.rsplit_once(' ').map_or(l, |(series, _)| series) };
                l.replace(&addr, "TRACKER")
                    .replace("127.0.0.153", "IP")
                    .replace("127.0.0.155", "IP")
                    .replace("127.0.0.154", "IP")
                    .replace("127.0.0.156", "IP")
            })
            .collect();
        names.sort();
        series.push((name, body, names));
    }
    let (ours, c) = (&series[1], &series[0]);
    assert!(c.2.len() > 5, "the exporter printed series: {}", c.1);
    assert_eq!(ours.2, c.2, "the same series\n--- C ---\n{}\n--- ours ---\n{}", c.1, ours.1);
}
