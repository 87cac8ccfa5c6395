//! The FastDFS wire protocol as pure functions on bytes (no sockets here).
//!
//! - [`header`]: the 10-byte packet header.
//! - [`command`]: command codes and the errno status byte.
//! - [`profile`]: the version profiles whose field widths differ.
//! - [`tracker`], [`stat`]: client ↔ tracker queries and listings.
//! - [`report`]: storage → tracker join, beats, reports and sync bookkeeping.
//! - [`leader`]: tracker ↔ tracker election and state copy.
//! - [`storage`]: client → storage commands.
//! - [`peer`]: storage → storage replication.
//! - [`listing`]: fastdfs-rs's own 120 LIST_FILES.
//!
//! Servers speak [`Profile::CLASSIC`]; client-side decoders accept the 6.15+/6.16 answers too.

pub mod codec;
pub mod command;
pub mod header;
pub mod leader;
pub mod listing;
pub mod parameters;
pub mod peer;
pub mod profile;
pub mod report;
pub mod stat;
pub mod status;
pub mod storage;
pub mod tracker;
pub(crate) mod wire;

pub use codec::{DecodeError, DecodeResult};
pub use command::{Command, Status};
pub use header::{Header, HEADER_LEN, RESP_CMD};
pub use profile::{Layout, Profile};
pub use status::StorageStatus;

/// `FDFS_GROUP_NAME_MAX_LEN`: the group field of most bodies.
pub const GROUP_LEN: usize = 16;
/// Remote filenames on the wire are shorter than this (C buffers are 128 bytes).
pub const MAX_FILENAME_LEN: usize = 128;
pub const MAX_TRACKERS: usize = 16;
pub const MAX_SERVERS_EACH_GROUP: usize = 32;
pub const MAX_GROUPS: usize = 512;
/// Size of the tracker's receive buffer in the sample config; non-streamed requests must fit.
pub const DEFAULT_MAX_REQUEST: u64 = 128 * 1024;

/// Text a peer sends that ends up in state files, binlogs, mark-file names or log lines
/// (storage IDs, IPs, domain names, version texts, tracker addresses): printable ASCII without
/// spaces, so it can never break a line, a `key=value` pair, a space-separated record or a path
/// out of its field. Empty is allowed (absent fields).
pub fn is_safe_token(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'#' | b'=')) || s.is_empty()
}

/// Group names: 1..16 ASCII letters or digits.
pub fn valid_group_name(g: &str) -> bool {
    (1..=GROUP_LEN).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_names() {
        assert!(super::valid_group_name("group1"));
        assert!(!super::valid_group_name(""));
        assert!(!super::valid_group_name("group-1"));
    }

    #[test]
    fn safe_tokens() {
        for ok in ["", "127.0.0.1", "100001", "6.16.1", "img.example.com", "[::1]:22122", "10.0.0.1,10.0.0.2:22122"] {
            assert!(super::is_safe_token(ok), "{ok}");
        }
        for bad in ["evil\n\tjoin_time=zzz", "a b", "a\tb", "../x", "a/b", "x#y", "k=v", "é", "a\0"] {
            assert!(!super::is_safe_token(bad), "{bad:?}");
        }
        assert!(!super::valid_group_name("abcdefghijklmnopq"));
    }
}
