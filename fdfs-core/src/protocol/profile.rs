//! Version profiles (PROTOCOL.md §0.2, §11). The widths that changed between FastDFS releases
//! live here and nowhere else, so a message layout asks its profile instead of hard-coding 16 or
//! 46.

/// Layout family of storage↔tracker, storage↔storage and listing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// V5.05 … V6.10: 16-byte IPs, 6-byte version text, HTTP port and domain fields.
    Classic,
    /// V6.15/V6.16: 46-byte internal IPs, 8-byte version, rw modes, reserved_mb, text tracker
    /// lists in JOIN, a port per server in FETCH_ALL.
    V616,
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
    /// What our servers speak: what most deployed clients expect.
    pub const CLASSIC: Profile = Profile { layout: Layout::Classic, response_ip_size: 16 };
    /// FastDFS 6.15+/6.16 with `response_ip_addr_size = auto` on an IPv4 cluster.
    pub const V6_16: Profile = Profile { layout: Layout::V616, response_ip_size: 16 };
    /// FastDFS 6.15+/6.16 answering with IPv6-wide fields.
    pub const V6_16_IPV6: Profile = Profile { layout: Layout::V616, response_ip_size: 46 };

    /// `IP_ADDRESS_SIZE` inside server-to-server structures.
    pub const fn ip_addr_size(self) -> usize {
        match self.layout {
            Layout::Classic => 16,
            Layout::V616 => 46,
        }
    }

    /// `FDFS_VERSION_SIZE`.
    pub const fn version_size(self) -> usize {
        match self.layout {
            Layout::Classic => 6,
            Layout::V616 => 8,
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

    /// The version text we announce in this profile (`"%d.%02d"` before 6.12, `M.m.p` after).
    pub const fn version_text(self) -> &'static str {
        match self.layout {
            Layout::Classic => "6.08",
            Layout::V616 => "6.16.1",
        }
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
        assert_eq!(Profile::CLASSIC.query_ip_width(), 15);
        assert_eq!(Profile::V6_16_IPV6.query_ip_width(), 45);
        assert_eq!(Profile::V6_16.version_size(), 8);
    }
}
