//! Trunk files written by C: our storage and nginx module take over the store path of a C 6.16.1
//! storage in trunk mode (`shared/fixtures/c-6.16.1-trunk-storage.tar.gz`) and serve every file
//! of its manifest with the right bytes, over the protocol and over HTTP; deleted files stay
//! gone; a trunk file deleted here frees its slot as C does; a new member's full copy carries
//! the trunk-resident files into the same trunk file and slot.

use std::time::Duration;

use fdfs_core::file_id::FileId;
use fdfs_core::protocol::Status;
use fdfs_e2e::fixture::{check_row, http_date, manifest, unpack, Row};
use fdfs_e2e::{client_for, eventually, http, Daemon, NginxProc, StorageProc, TrackerProc};

#[tokio::test]
async fn a_c_trunk_store_path_is_served_over_the_protocol_and_http() {
    let tracker = TrackerProc::start("");
    let t = tracker.addr();
    let fx = unpack("c-6.16.1-trunk-storage", "127.0.0.33", &t);
    let rows = manifest(&fx.root);
    assert!(rows.iter().filter(|r| r.kind == "trunk").count() >= 200, "the fixture has its trunk rows");
    let trunk_files: Vec<Vec<u8>> = ["000001", "000002"]
        .iter()
        .map(|n| std::fs::read(fx.root.join("base_path/store/data/00/00").join(n)).unwrap())
        .collect();
    let mut storage = Daemon::start("fdfs_storaged", &fx.conf, &fx.root.join("base_path"));
    let c = client_for(&t);
    for r in &rows {
        check_row(&c, &fx.addr, r).await;
    }
    for (n, before) in ["000001", "000002"].iter().zip(&trunk_files) {
        let now = std::fs::read(fx.root.join("base_path/store/data/00/00").join(n)).unwrap();
        assert!(now == *before, "trunk file {n} untouched by reading");
    }

    // The same files through the nginx module, from the slot at its offset.
    let store = fx.root.join("base_path/store");
    let ngx = NginxProc::serving_store("127.0.0.33", &store);
    for r in rows.iter().filter(|r| r.kind == "trunk" && r.size > 0).step_by(7) {
        let path = format!("/{}", r.file_id);
        let resp = http(&ngx.addr, "GET", path.as_bytes(), &[]);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!((resp.body.len() as u64, crc32fast::hash(&resp.body)), (r.size, r.crc32), "{path}");
        let named = FileId::parse(&r.file_id).unwrap().remote.info();
        let last_modified = resp.header("Last-Modified").unwrap_or_default().to_owned();
        assert_eq!(last_modified, http_date(named.create_timestamp as i64), "{path}: Last-Modified is the name's time");
        let ranged = http(&ngx.addr, "GET", path.as_bytes(), &[("Range", "bytes=1-3")]);
        if r.size >= 4 {
            assert_eq!(ranged.status, 206, "{path}");
            assert_eq!(ranged.body, resp.body[1..4], "{path}: range inside the slot");
        }
        let head = http(&ngx.addr, "HEAD", path.as_bytes(), &[]);
        assert_eq!(head.header("Content-Length"), Some(r.size.to_string().as_str()), "{path}");
    }
    for r in rows.iter().filter(|r| r.kind == "deleted") {
        assert_eq!(http(&ngx.addr, "GET", format!("/{}", r.file_id).as_bytes(), &[]).status, 404, "{}", r.file_id);
    }

    // A trunk file deleted here: gone (ENOENT, 404), its slot header zeroed as C zeroes it, the
    // others in the same trunk file intact.
    let trunk: Vec<&Row> = rows.iter().filter(|r| r.kind == "trunk" && r.size > 100).collect();
    let (gone, kept) = (trunk[0], trunk[1]);
    c.storage.delete(&fx.addr, "group1", &gone.remote()).await.unwrap();
    assert_eq!(
        c.storage.download(&fx.addr, "group1", &gone.remote(), 0, 0).await.unwrap_err().status(),
        Status::ENOENT
    );
    assert_eq!(http(&ngx.addr, "GET", format!("/{}", gone.file_id).as_bytes(), &[]).status, 404);
    check_row(&c, &fx.addr, kept).await;
    let binlog = std::fs::read_to_string(fx.root.join("base_path/data/sync/binlog.000")).unwrap();
    assert!(binlog.ends_with(&format!(" D {}\n", gone.remote())), "recorded");

    // A new member's full copy puts the trunk-resident files into its own trunk files.
    let port = fx.addr.rsplit(':').next().unwrap();
    let member = StorageProc::start(&t, "127.0.0.34", &format!("port = {port}\nsubdir_count_per_path = 256\n")).await;
    let b = member.addr();
    for r in rows.iter().filter(|r| r.kind == "trunk" && r.file_id != gone.file_id).step_by(11) {
        let want = r.clone();
        eventually(Duration::from_secs(60), "the trunk file on the new member", || {
            let (c, b, want) = (&c, b.clone(), want.clone());
            async move {
                if want.size == 0 {
                    return c.storage.file_info(&b, "group1", &want.remote(), 0).await.ok().map(|_| ());
                }
                let got = c.storage.download(&b, "group1", &want.remote(), 0, 0).await.ok()?;
                (crc32fast::hash(&got) == want.crc32).then_some(())
            }
        })
        .await;
    }
    assert!(member.base().join("data/00/00/000001").exists(), "written into trunk file 000001 as at the source");
    let e = c.storage.download(&b, "group1", &gone.remote(), 0, 0).await.unwrap_err();
    assert_eq!(e.status(), Status::ENOENT, "the file deleted at the source is not on the new member");
    storage.stop();
}

/// The fixture README's point 5: our storage, made trunk server by our tracker with the
/// fixture's trunk settings, rebuilds the free space from C's trunk binlog, compresses it
/// (`trunk_compress_binlog_min_interval`, C's old one kept as a backup) and keeps uploading
/// into C's trunk files (reusing their free space, no third trunk file while they have room)
/// without touching a byte of any file C stored; C's keys in `.data_init_flag` survive.
#[tokio::test]
async fn our_trunk_server_continues_the_c_trunk_files() {
    let tracker = TrackerProc::start(
        "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
         trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n\
         trunk_compress_binlog_min_interval = 1\ntrunk_binlog_max_backups = 2\n",
    );
    let t = tracker.addr();
    let fx = unpack("c-6.16.1-trunk-storage", "127.0.0.33", &t);
    let rows = manifest(&fx.root);
    let base = fx.root.join("base_path");
    let text = std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap();
    let mut c_free = fdfs_core::trunk::space::FreeSpace::new(Default::default(), 0);
    for l in text.lines() {
        c_free.replay(&fdfs_core::trunk::space::SpaceRecord::parse(l).unwrap());
    }
    let free_before = c_free.free_bytes();
    let mut storage = Daemon::start("fdfs_storaged", &fx.conf, &base);
    let c = client_for(&t);
    let mut new = Vec::new();
    let mut total = 0u64;
    for i in 0..60usize {
        let data: Vec<u8> = (0..(i * 997) % 20_000).map(|j| (j * 7 + i) as u8).collect();
        total += (data.len() as u64 + 24).div_ceil(256) * 256;
        let name = eventually(Duration::from_secs(20), "an upload into a trunk slot", || {
            let (c, addr, data) = (&c, fx.addr.clone(), data.clone());
            async move {
                let r = c
                    .storage
                    .upload(
                        &addr,
                        fdfs_core::client::UploadKind::Normal,
                        -1,
                        "dat",
                        fdfs_core::client::Content::Bytes(&data),
                    )
                    .await
                    .ok()?;
                // Until the leader has named it trunk server, small files are regular files.
                (r.filename.len() == 60).then_some(r.filename)
            }
        })
        .await;
        new.push((name, data));
    }
    assert!(total < free_before, "the test fits in the C trunk files' free space");
    let compressed = std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap();
    assert!(compressed.len() < text.len() / 4, "compressed: {} bytes from {}", compressed.len(), text.len());
    let backups: Vec<String> = std::fs::read_dir(base.join("data/trunk"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("binlog.") && n.len() == "binlog.".len() + 14)
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(base.join("data/trunk").join(&backups[0])).unwrap(), text, "C's binlog kept");
    assert!(!base.join("store/data/00/00/000003").exists(), "no third trunk file while the two have room");
    for (name, data) in &new {
        let got = c.storage.download(&fx.addr, "group1", name, 0, 0).await.unwrap_or_default();
        assert!(got == *data || data.is_empty(), "{name}");
    }
    for r in &rows {
        check_row(&c, &fx.addr, r).await;
    }
    // Every live slot, C's and ours, is in use in the trunk binlog, and none overlap.
    let text = std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap();
    let mut free = fdfs_core::trunk::space::FreeSpace::new(Default::default(), 0);
    for l in text.lines() {
        free.replay(&fdfs_core::trunk::space::SpaceRecord::parse(l).unwrap());
    }
    let live = rows.iter().filter(|r| r.kind == "trunk").map(|r| r.remote()).chain(new.iter().map(|(n, _)| n.clone()));
    let mut slots = Vec::new();
    for name in live {
        let loc = fdfs_core::file_id::RemoteFilename::parse(&name, Some(1)).unwrap().trunk_location().unwrap();
        for b in free.free_blocks() {
            let end = loc.offset as u64 + loc.size as u64;
            let overlap = b.trunk_id == loc.trunk_id && (b.offset as u64) < end && loc.offset < b.offset + b.size;
            assert!(!overlap, "{name}: slot {loc:?} free in the trunk binlog ({b:?})");
        }
        slots.push((loc.trunk_id, loc.offset, loc.size));
    }
    slots.sort();
    for w in slots.windows(2) {
        assert!(w[0].0 != w[1].0 || w[0].1 + w[0].2 <= w[1].1, "slots overlap: {:?} {:?}", w[0], w[1]);
    }
    let flag = std::fs::read_to_string(base.join("data/.data_init_flag")).unwrap();
    assert!(flag.contains("store_path_mark0=MTI3LjAuMC4zMw"), "C's store path mark kept: {flag}");
    assert!(flag.contains("current_trunk_file_id=2\n"), "{flag}");
    assert!(!flag.contains("trunk_last_compress_time=0\n"), "the compression recorded: {flag}");
    storage.stop();
}

/// One packet of `shared/captures/fastdfs-6.16.1-trunk.jsonl`.
#[derive(Debug, Clone)]
struct Packet {
    exchange: String,
    cmd: u8,
    status: u8,
    in_reply_to: Option<u8>,
    body: Vec<u8>,
}

fn trunk_capture() -> Vec<Packet> {
    let text = std::fs::read_to_string(fdfs_e2e::test_data_dir().join("captures/fastdfs-6.16.1-trunk.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let hex = v["body_hex"].as_str().unwrap();
            Packet {
                exchange: v["exchange"].as_str().unwrap().to_owned(),
                cmd: v["cmd"].as_u64().unwrap() as u8,
                status: v["status"].as_u64().unwrap() as u8,
                in_reply_to: v["in_reply_to"].as_u64().map(|c| c as u8),
                body: (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect(),
            }
        })
        .collect()
}

/// The captured request of `cmd` in an exchange whose name contains `exchange`, and its answer.
fn captured(p: &[Packet], exchange: &str, cmd: u8) -> (Packet, Packet) {
    let i = p
        .iter()
        .position(|x| x.exchange.contains(exchange) && x.cmd == cmd)
        .unwrap_or_else(|| panic!("{exchange} {cmd}"));
    let answer = p[i + 1..].iter().find(|x| x.exchange == p[i].exchange && x.in_reply_to == Some(cmd)).unwrap();
    (p[i].clone(), answer.clone())
}

/// The trunk commands of the capture, sent as C 6.16.1 sent them, get answers of the captured
/// shape from our tracker and trunk server (on the C fixture): 72 before JOIN, 94 (who, and
/// naming the current one), 31, 27/28/29 from a member (slot sizes as C allocates them, and
/// the trunk binlog lines C writes), and 33 + 30 to a member that is not the trunk server.
#[tokio::test]
async fn captured_trunk_requests_get_the_captured_answers() {
    use fdfs_core::client::{Content, UploadKind};
    use fdfs_core::protocol::peer::{TrunkInfo, TrunkSlotReq};
    use fdfs_core::protocol::Profile;
    use fdfs_e2e::{raw_exchange, raw_request};
    let p = trunk_capture();
    let tracker = TrackerProc::start(
        "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
         trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n",
    );
    let t = tracker.addr();
    let fx = unpack("c-6.16.1-trunk-storage", "127.0.0.33", &t);
    let base = fx.root.join("base_path");
    let mut storage = Daemon::start("fdfs_storaged", &fx.conf, &base);
    let c = client_for(&t);
    eventually(Duration::from_secs(20), "our storage named trunk server", || async {
        let list = c.tracker.list_storages("group1", None).await.ok()?;
        list.iter().find(|s| s.if_trunk_server && s.id == "127.0.0.33").map(|_| ())
    })
    .await;
    // It learns so from its next beat answer: then a small upload takes a trunk slot.
    eventually(Duration::from_secs(20), "our storage acting as trunk server", || async {
        let data = b"first";
        let r = c.storage.upload(&fx.addr, UploadKind::Normal, -1, "", Content::Bytes(data)).await.ok()?;
        (r.filename.len() == 60).then_some(())
    })
    .await;

    let (req, want) = captured(&p, "fetch_trunk_fid_72_not_logged_in", 72);
    let (st, body) = raw_request(&t, req.cmd, &req.body);
    assert_eq!((st, body), (want.status, want.body), "72 before JOIN: EACCES");
    let (req, want) = captured(&p, "set_trunk_server_94_empty_id", 94);
    assert_eq!(raw_request(&t, req.cmd, &req.body), (want.status, want.body.clone()), "94 who: {:?}", want.body);
    let (req, want) = captured(&p, "set_trunk_server_94_current_id", 94);
    assert_eq!(raw_request(&t, req.cmd, &req.body), (want.status, want.body), "94 naming the current one: EALREADY");

    let binlog = || std::fs::read_to_string(base.join("data/trunk/binlog")).unwrap();
    let (st, size) = raw_request(&fx.addr, 31, &[]);
    assert_eq!((st, size.len()), (0, 8));
    assert_eq!(i64::from_be_bytes(size.try_into().unwrap()) as usize, binlog().len(), "31: the trunk binlog's size");

    // A member asks for slots as C's S1 asked S2 (27), confirms (28) and frees one (29): our
    // member joins the group, and the test speaks from its address (a stranger is refused).
    let port: u16 = fx.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut member =
        StorageProc::start(&t, "127.0.0.35", &format!("port = {port}\nsubdir_count_per_path = 256\n")).await;
    let probe = TrunkSlotReq { group: "group1".into(), info: TrunkInfo::default() }.encode(Profile::CLASSIC);
    assert_eq!(
        fdfs_e2e::raw_request_from("127.0.0.36", &fx.addr, 29, &probe).0,
        Status::EACCES.0,
        "29 from a stranger"
    );
    eventually(Duration::from_secs(20), "the trunk server knows the member", || async {
        (fdfs_e2e::raw_request_from("127.0.0.35", &fx.addr, 29, &probe).0 != Status::EACCES.0).then_some(())
    })
    .await;
    let mut s = fdfs_e2e::connect_from("127.0.0.35", &fx.addr);
    let allocs: Vec<(Packet, Packet)> = p
        .iter()
        .enumerate()
        .filter(|(_, x)| x.exchange.starts_with("D7_") && x.cmd == 27)
        .map(|(i, x)| (x.clone(), p[i + 1].clone()))
        .collect();
    assert_eq!(allocs.len(), 3);
    let mut slots = Vec::new();
    for (req, want) in &allocs {
        let (st, got) = raw_exchange(&mut s, 27, &req.body);
        assert_eq!((st, got.len()), (want.status, want.body.len()), "27: a 15-byte trunk info");
        let (ours, theirs) = (
            TrunkInfo::decode(&got, Profile::CLASSIC).unwrap(),
            TrunkInfo::decode(&want.body, Profile::CLASSIC).unwrap(),
        );
        assert_eq!((ours.store_path_index, ours.size), (theirs.store_path_index, theirs.size), "slot size as C's");
        assert_eq!(ours.offset % 256, 0, "aligned");
        let before = binlog();
        let confirm = TrunkSlotReq { group: "group1".into(), info: ours.clone() }.encode(Profile::CLASSIC);
        assert_eq!(confirm.len(), 31, "28's body, as captured");
        assert_eq!(raw_exchange(&mut s, 28, &confirm), (0, Vec::new()), "28");
        let line = binlog()[before.len()..].to_owned();
        assert!(
            line.ends_with(&format!(" D 0 0 0 {} {} {}\n", ours.trunk_file_id, ours.offset, ours.size)),
            "the confirmation line: {line:?}"
        );
        slots.push(confirm);
    }
    let before = binlog();
    assert_eq!(raw_exchange(&mut s, 29, &slots[0]), (0, Vec::new()), "29");
    let freed = binlog()[before.len()..].to_owned();
    assert!(freed.lines().last().unwrap().contains(" A 0 0 0 "), "the freed slot is free space again: {freed:?}");

    // The member takes C's trunk binlog push (33, then 30) from the trunk server's address,
    // once our trunk server's own push to it is done (nothing changes trunk space after that).
    let member_base = member.base();
    eventually(Duration::from_secs(20), "the member holds the trunk binlog", || async {
        (std::fs::read(member_base.join("data/trunk/binlog")).ok()? == binlog().into_bytes()).then_some(())
    })
    .await;
    let addr = member.addr();
    let (req, want) = captured(&p, "D6c_trunk_server_stopped_then_set_trunk_server_trunk_binlog_", 33);
    let stranger = fdfs_e2e::raw_request_from("127.0.0.36", &addr, req.cmd, &req.body);
    assert_eq!(stranger.0, Status::EACCES.0, "33 from a stranger");
    let mut s = fdfs_e2e::connect_from("127.0.0.33", &addr);
    assert_eq!(raw_exchange(&mut s, req.cmd, &req.body), (want.status, want.body), "33");
    let (req, want) = captured(&p, "D6c_trunk_server_stopped_then_set_trunk_server_trunk_binlog_", 30);
    assert_eq!(req.body.len(), 41_213, "the whole captured trunk binlog");
    assert_eq!(raw_exchange(&mut s, req.cmd, &req.body), (want.status, want.body), "30");
    assert_eq!(std::fs::read(member_base.join("data/trunk/binlog")).unwrap(), req.body, "kept as sent");
    let (st, _) = raw_exchange(&mut s, 30, b"1795800553 X 0 0 0 1 0 4194304\n");
    assert_eq!(st, Status::EINVAL.0, "a line that is not a trunk binlog line is refused");
    member.daemon.stop();
    storage.stop();
}
