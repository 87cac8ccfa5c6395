//! Every key of the C FastDFS 6.16.1 sample configs (the archive's `etc/fdfs/`) is read by our
//! parser of that file: honoured, or warned about when set to anything but C's default. A key
//! no parser looks at would be ignored silently. Prints SKIPPED and passes when the archive is
//! absent.

use fdfs_core::config::{ClientConfig, Ini, StorageConfig, TrackerConfig};
use fdfs_e2e::c_fastdfs_bin;

/// The sample `name`, with its paths pointed at a directory that exists (the samples name
/// `/home/yuqing/fastdfs`).
fn sample(bin: &std::path::Path, name: &str, dir: &std::path::Path) -> Ini {
    let text = std::fs::read_to_string(bin.join("../etc/fdfs").join(name)).unwrap();
    let d = dir.display().to_string();
    let text = text.replace("/home/yuqing/fastdfs1", &d).replace("/home/yuqing/fastdfs", &d);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Ini::load(&path).unwrap()
}

fn unread(ini: &Ini) -> Vec<String> {
    ini.unread()
        .iter()
        .map(|e| {
            format!("{}{} (line {})", e.section.as_ref().map_or(String::new(), |s| format!("[{s}] ")), e.key, e.line)
        })
        .collect()
}

#[test]
fn every_key_of_the_c_sample_configs_is_honoured_or_warned_about() {
    let Some(bin) = c_fastdfs_bin("every_key_of_the_c_sample_configs_is_honoured_or_warned_about") else { return };
    let dir = tempfile::tempdir().unwrap();
    let tracker = sample(&bin, "tracker.conf", dir.path());
    TrackerConfig::from_ini(&tracker).unwrap();
    let storage = sample(&bin, "storage.conf", dir.path());
    StorageConfig::from_ini(&storage).unwrap();
    let client = sample(&bin, "client.conf", dir.path());
    ClientConfig::from_ini(&client).unwrap();
    let missed: Vec<String> = [("tracker.conf", &tracker), ("storage.conf", &storage), ("client.conf", &client)]
        .into_iter()
        .flat_map(|(name, ini)| unread(ini).into_iter().map(move |k| format!("{name}: {k}")))
        .collect();
    assert!(missed.is_empty(), "keys no parser reads (silently ignored):\n{}", missed.join("\n"));
}
