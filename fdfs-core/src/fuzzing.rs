//! One entry point that feeds arbitrary bytes to every decoder and parser of this crate, shared
//! by the cargo-fuzz target (`fuzz/`) and the property tests. It must never panic.

use std::path::Path;

use crate::config::{ClientConfig, Ini, ModFastdfsConfig, StorageConfig, StorageIds, TrackerConfig};
use crate::file_id::{FileId, RemoteFilename};
use crate::protocol::storage::StreamedHead;
use crate::protocol::{leader, peer, report, stat, storage, tracker, Header, Profile, HEADER_LEN};

const PROFILES: [Profile; 3] = [Profile::CLASSIC, Profile::V6_16, Profile::V6_16_IPV6];

fn streamed<T: StreamedHead>(data: &[u8]) {
    if data.len() >= T::FIXED_LEN {
        if let Ok(len) = T::head_len(&data[..T::FIXED_LEN]) {
            let head = &data[..len.min(data.len())];
            let _ = T::decode_head(head, data.len() as u64);
        }
    }
    let _ = T::decode_head(data, data.len() as u64);
}

/// Runs every decoder on `data`. Results are discarded: only panics and allocations matter.
pub fn decode_everything(data: &[u8]) {
    if let Ok(h) = <[u8; HEADER_LEN]>::try_from(&data[..data.len().min(HEADER_LEN)]) {
        let _ = Header::decode(&h, 1 << 20);
    }
    let _ = tracker::GroupReq::decode(data);
    let _ = tracker::FileReq::decode(data);
    let _ = tracker::StoreTarget::decode_any(data);
    let _ = tracker::FetchTarget::decode_any(data);
    let _ = tracker::StoreTargets::decode_any(data);
    let _ = tracker::GroupStorageReq::decode(data);
    let _ = tracker::decode_trunk_server_id(data);
    let _ = stat::GroupStat::decode_list_any(data);
    let _ = stat::StorageStat::decode_list_any(data);
    let _ = report::decode_beat(data);
    let _ = report::decode_disk_usage(data, data.first().copied().unwrap_or(1) as usize);
    let _ = report::decode_sync_report(data);
    let _ = report::SyncSource::decode_opt(data);
    let _ = report::decode_changelog_req(data);
    let _ = report::StorageLookupReq::decode(data);
    let _ = report::GetMyIpReq::decode(data);
    let _ = report::GetGroupNameReq::decode(data);
    let _ = report::FetchStorageIdsReq::decode(data);
    let _ = report::StorageIdsPage::decode(data);
    let _ = leader::decode_leader_addr(data);
    let _ = leader::SysFileChunk::decode(data);
    for p in PROFILES {
        let _ = tracker::FetchTargets::decode(data, p);
        let _ = tracker::StoreTargets::decode(data, p);
        let _ = tracker::TrackerClusterStat::decode(data, p);
        let _ = report::JoinReq::decode(data, p);
        let _ = report::JoinResp::decode(data, p);
        let _ = report::ChangeNotify::decode(data, p);
        let _ = report::decode_briefs(data, p);
        let _ = report::ReportStatusReq::decode(data, p);
        let _ = report::IpChangedReq::decode(data, p);
        let _ = leader::TrackerStatus::decode(data, p);
        let _ = leader::SysFileReq::decode(data, p);
        let _ = storage::FileInfoResp::decode(data, p);
        let _ = peer::TrunkSlotReq::decode(data, p);
    }
    streamed::<storage::UploadHead>(data);
    streamed::<storage::SlaveUploadHead>(data);
    streamed::<storage::AppendHead>(data);
    streamed::<storage::ModifyHead>(data);
    streamed::<peer::SyncFileHead>(data);
    streamed::<peer::SyncRangeHead>(data);
    let _ = storage::FileIdResp::decode(data);
    let _ = storage::DownloadReq::decode(data);
    let _ = storage::SetMetadataReq::decode(data);
    let _ = storage::TruncateReq::decode(data);
    let _ = storage::decode_bare_filename(data);
    let _ = storage::CreateLinkReq::decode(data);
    let _ = storage::parse_metadata(data);
    let _ = peer::SyncTruncateReq::decode(data);
    let _ = peer::SyncDeleteReq::decode(data);
    let _ = peer::SyncLinkReq::decode(data);

    let text = String::from_utf8_lossy(data);
    let _ = RemoteFilename::parse(&text, Some(2));
    let _ = FileId::parse(&text);
    route_urls(&text);
    parse_configs(&text);
}

/// The nginx module's request logic on arbitrary paths and query strings.
pub fn route_urls(text: &str) {
    static SETTINGS: std::sync::OnceLock<crate::http::Settings> = std::sync::OnceLock::new();
    let s = SETTINGS.get_or_init(|| {
        let conf = "group_name = group1\nurl_have_group_name = true\nstore_path0 = /data\nflv_support = true\n\
                    http.anti_steal.check_token = false\n";
        let ini = Ini::parse(conf, Path::new("/nonexistent-fuzz-dir/mod_fastdfs.conf")).expect("valid");
        let config = ModFastdfsConfig::from_ini(&ini).expect("valid");
        crate::http::Settings { config, ids: None, local_ips: Vec::new(), members: Default::default() }
    });
    let (path, args) = text.split_once('?').unwrap_or((text, ""));
    let _ = s.route(&format!("/{path}"), args, None, false, 1_800_000_000);
    let _ = s.route(&format!("/group1/M00/00/00/{path}"), args, None, true, 0);
    let _ = crate::http::percent_decode(text);
}

/// The config parsers on arbitrary text (no includes are followed: the path does not exist).
pub fn parse_configs(text: &str) {
    let path = Path::new("/nonexistent-fuzz-dir/fuzz.conf");
    if let Ok(ini) = Ini::parse(text, path) {
        let _ = TrackerConfig::from_ini(&ini);
        let _ = StorageConfig::from_ini(&ini);
        let _ = ClientConfig::from_ini(&ini);
        let _ = ModFastdfsConfig::from_ini(&ini);
    }
    let _ = StorageIds::parse(text, path);
}
