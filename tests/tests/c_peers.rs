//! Real C FastDFS 6.16.1 daemons (`shared/reference/`) beside ours. Each test prints SKIPPED and
//! passes when the archive is absent.

use std::time::Duration;

use fdfs_core::client::{Content, UploadKind};
use fdfs_core::tracker::status;
use fdfs_e2e::{c_fastdfs_bin, common_free_port, eventually, CDaemon, StorageProc, TrackerProc};

/// A C member in trunk mode asks our trunk server for its slots (27/28). C makes that connection
/// without binding it, so on one host it arrives from the host's address, not the member's:
/// our peer checks must take it (they refused it with EACCES, and the C storage failed the
/// upload).
#[tokio::test]
async fn a_c_member_takes_trunk_slots_from_our_trunk_server() {
    let Some(bin) = c_fastdfs_bin("a_c_member_takes_trunk_slots_from_our_trunk_server") else { return };
    let tracker = TrackerProc::start(
        "bind_addr = 127.0.0.74\nuse_trunk_file = true\nslot_min_size = 256\nslot_max_size = 1MB\n\
         trunk_file_size = 4MB\ntrunk_alloc_alignment_size = 256\n",
    );
    let t = tracker.addr();
    let port = common_free_port(&["127.0.0.75", "127.0.0.76"]);
    let ours = StorageProc::start(&t, "127.0.0.75", &format!("port = {port}\n")).await;
    let c = fdfs_e2e::client_for(&t);
    let data = vec![5u8; 3000];
    eventually(Duration::from_secs(30), "our storage the trunk server", || async {
        let r = c.storage.upload(&ours.addr(), UploadKind::Normal, -1, "bin", Content::Bytes(&data)).await.ok()?;
        (r.filename.len() == 60).then_some(())
    })
    .await;
    let theirs = CDaemon::storage(&bin, &t, "group1", "127.0.0.76", port, "");
    eventually(Duration::from_secs(60), "the C storage ACTIVE", || async {
        let list = c.tracker.list_storages("group1", Some("127.0.0.76")).await.ok()?;
        (list.first()?.status == status::ACTIVE).then_some(())
    })
    .await;
    let mut names = Vec::new();
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
}

/// Storage-ID mode under the C 6.16.1 tracker: our storage and our client fetch its ID table
/// (69) in the form 6.16.1 accepts (5 bytes; the 4-byte classic form got EINVAL at every start).
#[tokio::test]
async fn our_storage_and_client_fetch_the_id_table_from_a_c_tracker() {
    let Some(bin) = c_fastdfs_bin("our_storage_and_client_fetch_the_id_table_from_a_c_tracker") else { return };
    let port = common_free_port(&["127.0.0.77"]);
    let ids = tempfile::tempdir().unwrap();
    let ids_file = ids.path().join("storage_ids.conf");
    std::fs::write(&ids_file, format!("100077 group1 127.0.0.77:{port}\n")).unwrap();
    let tracker = CDaemon::tracker(
        &bin,
        "127.0.0.78",
        &format!("use_storage_id = true\nstorage_ids_filename = {}\n", ids_file.display()),
    );
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
}
