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
    let port = std::net::TcpListener::bind("127.0.0.33:0").unwrap().local_addr().unwrap().port();
    let store = fx.root.join("base_path/store");
    let ngx = NginxProc::start(
        "127.0.0.33",
        port,
        &format!("group_name=group1\nurl_have_group_name=true\nstore_path0={}\n", store.display()),
        "",
    );
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
/// fixture's trunk settings, rebuilds the free space from C's trunk binlog and keeps uploading
/// into C's trunk files (reusing their free space, no third trunk file while they have room)
/// without touching a byte of any file C stored; C's keys in `.data_init_flag` survive.
#[tokio::test]
async fn our_trunk_server_continues_the_c_trunk_files() {
    let tracker = TrackerProc::start(
        "use_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\ntrunk_file_size = 4MB\n\
         trunk_alloc_alignment_size = 256\ntrunk_free_space_merge = true\n",
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
    storage.stop();
}
