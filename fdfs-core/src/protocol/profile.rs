//! Version profiles (PROTOCOL.md §0.2, §11). The widths that changed between FastDFS releases
//! live here and nowhere else, so a message layout asks its profile instead of hard-coding 16 or
//! 46, and a server can speak to each peer in that peer's own generation.

use std::fmt;
use std::str::FromStr;

/// Layout generation of storage↔tracker, storage↔storage and listing messages, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layout {
    /// V5.05 … V6.10: 16-byte IPs, 6-byte version text, HTTP port and domain fields.
    Classic,
    /// V6.11: 46-byte IPs (libfastcommon 1.0.71), storage ID in JOIN, 100-byte tracker entries.
    V611,
    /// V6.12: as 6.11 with an 8-byte `M.m.p` version field.
    V612,
    /// V6.13.1+: HTTP port and domain gone, rw modes and reserved_mb in the listings.
    V613,
    /// V6.15: tracker list in JOIN as text lines, client answers sized by
    /// `response_ip_addr_size`.
    V615,
    /// V6.16: a port per server in QUERY_FETCH_ALL, 21-byte GET_MY_IP, `ip:port` look-ups.
    V616,
}

impl Layout {
    pub const ALL: [Layout; 6] =
        [Layout::Classic, Layout::V611, Layout::V612, Layout::V613, Layout::V615, Layout::V616];

    /// The release name used in configs and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Classic => "classic",
            Layout::V611 => "6.11",
            Layout::V612 => "6.12",
            Layout::V613 => "6.13",
            Layout::V615 => "6.15",
            Layout::V616 => "6.16",
        }
    }

    /// The version text a storage of this generation announces in JOIN (`"%d.%02d"` before
    /// 6.12, `M.m.p` after).
    pub const fn version_text(self) -> &'static str {
        match self {
            Layout::Classic => "6.08",
            Layout::V611 => "6.11",
            Layout::V612 => "6.12.4",
            Layout::V613 => "6.13.2",
            Layout::V615 => "6.15.4",
            Layout::V616 => "6.16.1",
        }
    }

    /// The generation a version text (`6.06`, `6.12.4`, `V6.16.1`) belongs to, if it names one.
    pub fn from_version(text: &str) -> Option<Layout> {
        let t = text.trim().trim_start_matches(['V', 'v']);
        let mut parts = t.split('.');
        let major: u32 = parts.next()?.trim().parse().ok()?;
        let minor: u32 = parts.next()?.trim().parse().ok()?;
        Some(match (major, minor) {
            (0..=5, _) | (6, 0..=10) => Layout::Classic,
            (6, 11) => Layout::V611,
            (6, 12) => Layout::V612,
            (6, 13..=14) => Layout::V613,
            (6, 15) => Layout::V615,
            _ => Layout::V616,
        })
    }

    /// Fixed 100-byte (`IP_ADDRESS_SIZE*2+8`) or 40-byte tracker entries in JOIN, rather than
    /// the text lines of 6.15+.
    pub const fn join_has_fixed_tracker_entries(self) -> bool {
        matches!(self, Layout::Classic | Layout::V611 | Layout::V612 | Layout::V613)
    }

    /// HTTP port and domain name in JOIN and the listings (gone in 6.13).
    pub const fn has_http_fields(self) -> bool {
        matches!(self, Layout::Classic | Layout::V611 | Layout::V612)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A generation named in a config file: `classic` (or any release up to 6.10), `6.11`, `6.12`,
/// `6.13`, `6.15`, `6.16`, with or without a patch level.
impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("classic") {
            return Ok(Layout::Classic);
        }
        Layout::from_version(s).ok_or_else(|| format!("{s:?} is not a FastDFS version (classic, 6.11 … 6.16)"))
    }
}

/// What one end of a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    pub layout: Layout,
    /// Size of the IP field in client-facing answers, NUL included: 16 (IPv4) or 46 (IPv6).
    /// Query answers use one byte less (the C code drops the NUL), file info the full size.
    pub response_ip_size: usize,
}

impl Profile {
    /// V5.05 … V6.10: what most deployed classic clients expect.
    pub const CLASSIC: Profile = Profile { layout: Layout::Classic, response_ip_size: 16 };
    /// FastDFS 6.15+/6.16 with `response_ip_addr_size = auto` on an IPv4 cluster.
    pub const V6_16: Profile = Profile { layout: Layout::V616, response_ip_size: 16 };
    /// FastDFS 6.15+/6.16 answering with IPv6-wide fields.
    pub const V6_16_IPV6: Profile = Profile { layout: Layout::V616, response_ip_size: 46 };

    /// The profile of a generation. Before 6.15 the answer width is `IP_ADDRESS_SIZE` itself;
    /// from 6.15 on `ipv6_answers` (`response_ip_addr_size`) chooses it.
    pub const fn of(layout: Layout, ipv6_answers: bool) -> Profile {
        let response_ip_size = match layout {
            Layout::Classic => 16,
            Layout::V611 | Layout::V612 | Layout::V613 => 46,
            Layout::V615 | Layout::V616 => {
                if ipv6_answers {
                    46
                } else {
                    16
                }
            }
        };
        Profile { layout, response_ip_size }
    }

    /// `IP_ADDRESS_SIZE` inside server-to-server structures.
    pub const fn ip_addr_size(self) -> usize {
        match self.layout {
            Layout::Classic => 16,
            _ => 46,
        }
    }

    /// `FDFS_VERSION_SIZE`.
    pub const fn version_size(self) -> usize {
        match self.layout {
            Layout::Classic | Layout::V611 => 6,
            _ => 8,
        }
    }

    /// Width of the IP text in tracker query answers (101..107): `response_ip_size − 1`.
    pub const fn query_ip_width(self) -> usize {
        self.response_ip_size - 1
    }

    /// `FDFSStorageBrief`: status, port i32, id[16], ip.
    pub const fn brief_len(self) -> usize {
        1 + 4 + 16 + self.ip_addr_size()
    }

    /// The version text we announce in this profile.
    pub const fn version_text(self) -> &'static str {
        self.layout.version_text()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::CLASSIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_reference_table() {
        assert_eq!(Profile::CLASSIC.brief_len(), 37);
        assert_eq!(Profile::V6_16.brief_len(), 67);
        assert_eq!(Profile::of(Layout::V611, false).brief_len(), 67);
        assert_eq!(Profile::CLASSIC.query_ip_width(), 15);
        assert_eq!(Profile::of(Layout::V613, false).query_ip_width(), 45, "6.11…6.13 answer with IP_ADDRESS_SIZE");
        assert_eq!(Profile::V6_16_IPV6.query_ip_width(), 45);
        assert_eq!(Profile::V6_16.version_size(), 8);
        assert_eq!(Profile::of(Layout::V611, false).version_size(), 6);
    }

    #[test]
    fn versions_name_generations() {
        for (text, l) in [
            ("5.11", Layout::Classic),
            ("6.06", Layout::Classic),
            ("V6.10", Layout::Classic),
            ("6.11", Layout::V611),
            ("6.12.4", Layout::V612),
            ("6.13.2", Layout::V613),
            ("6.15.4", Layout::V615),
            ("6.16.1", Layout::V616),
            ("7.0.0", Layout::V616),
        ] {
            assert_eq!(Layout::from_version(text), Some(l), "{text}");
        }
        assert_eq!("classic".parse::<Layout>(), Ok(Layout::Classic));
        assert!("ipv6".parse::<Layout>().is_err());
        for l in Layout::ALL {
            assert_eq!(l.name().parse::<Layout>(), Ok(l));
            assert_eq!(Layout::from_version(l.version_text()), Some(l));
        }
    }
}
