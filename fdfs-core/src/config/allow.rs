//! `allow_hosts`: which peers may connect (PROTOCOL.md §8.1). Entries are `*`, IPs, CIDRs
//! (`192.168.5.64/26`), octet ranges (`10.0.1.[1-15,20]`) or host names, which may carry the
//! same ranges (`host[01-08,20-25].domain.com`) and are resolved when the config is loaded.

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    Exact(IpAddr),
    Cidr(u32, u32),
}

/// The compiled list; empty or containing `*` allows everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowHosts {
    rules: Vec<Rule>,
}

/// At most this many names a range pattern may expand to.
const MAX_EXPANSION: usize = 4096;

impl AllowHosts {
    pub fn any() -> Self {
        Self { rules: vec![Rule::Any] }
    }

    /// Compiles the entries; an entry that is neither an address nor a resolvable name is an
    /// error naming it.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        Self::parse_indexed(entries).map_err(|(_, why)| why)
    }

    /// As [`Self::parse`], telling which entry failed.
    pub fn parse_indexed(entries: &[String]) -> Result<Self, (usize, String)> {
        if entries.is_empty() {
            return Ok(Self::any());
        }
        let mut rules = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            Self::compile_entry(e, &mut rules).map_err(|why| (i, why))?;
        }
        Ok(Self { rules })
    }

    fn compile_entry(e: &str, rules: &mut Vec<Rule>) -> Result<(), String> {
        {
            let e = e.trim();
            if e == "*" {
                rules.push(Rule::Any);
            } else if let Some((net, bits)) = e.split_once('/') {
                let net: Ipv4Addr = net.parse().map_err(|_| format!("bad CIDR {e}"))?;
                let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or(format!("bad CIDR {e}"))?;
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                rules.push(Rule::Cidr(u32::from(net) & mask, mask));
            } else {
                for name in expand(e)? {
                    match name.parse::<IpAddr>() {
                        Ok(ip) => rules.push(Rule::Exact(ip)),
                        Err(_) => {
                            let addrs = (name.as_str(), 0).to_socket_addrs().map_err(|err| format!("{name}: {err}"))?;
                            rules.extend(addrs.map(|a| Rule::Exact(a.ip())));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.rules.iter().any(|r| match r {
            Rule::Any => true,
            Rule::Exact(a) => *a == ip,
            Rule::Cidr(net, mask) => matches!(ip, IpAddr::V4(v4) if u32::from(v4) & mask == *net),
        })
    }
}

/// Expands `prefix[a-b,c]suffix` (one bracket group); numbers keep the width of `a`.
fn expand(e: &str) -> Result<Vec<String>, String> {
    let Some(open) = e.find('[') else { return Ok(vec![e.to_owned()]) };
    let close = e[open..].find(']').map(|i| open + i).ok_or(format!("unclosed [ in {e}"))?;
    let (prefix, spec, suffix) = (&e[..open], &e[open + 1..close], &e[close + 1..]);
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let width = a.trim().len();
        let (a, b): (u32, u32) = (
            a.trim().parse().map_err(|_| format!("bad range in {e}"))?,
            b.trim().parse().map_err(|_| format!("bad range in {e}"))?,
        );
        if a > b || out.len() + (b - a) as usize >= MAX_EXPANSION {
            return Err(format!("bad range in {e}"));
        }
        for n in a..=b {
            out.push(format!("{prefix}{n:0width$}{suffix}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> AllowHosts {
        AllowHosts::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn forms() {
        assert!(a(&["*"]).allows("8.8.8.8".parse().unwrap()));
        assert!(a(&[]).allows("8.8.8.8".parse().unwrap()));
        let r = a(&["10.0.1.[1-15,20]", "192.168.5.64/26", "127.0.0.1"]);
        for ok in ["10.0.1.1", "10.0.1.15", "10.0.1.20", "192.168.5.64", "192.168.5.127", "127.0.0.1"] {
            assert!(r.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["10.0.1.16", "10.0.1.0", "192.168.5.128", "127.0.0.2"] {
            assert!(!r.allows(no.parse().unwrap()), "{no}");
        }
        assert!(r.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(expand("host[01-03].x").unwrap(), vec!["host01.x", "host02.x", "host03.x"]);
        assert!(AllowHosts::parse(&["1.2.3.4/40".into()]).is_err());
        assert!(AllowHosts::parse(&["10.0.0.[0-99999999]".into()]).is_err());
        assert!(AllowHosts::parse(&["10.0.0.[5-1]".into()]).is_err());
    }
}
