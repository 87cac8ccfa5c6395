//! Upload grants for HTTP uploads: what an application server lets a browser upload straight
//! into a group, signed with the secret it shares with the storages (`http_upload_secret`),
//! as the anti-steal token is for downloads. A grant names the group (optional), when it
//! expires, the largest file, the extensions allowed and metadata every upload under it gets;
//! it travels as the upload URL's query (`fdfs_http_token` prints one) and is signed with
//! HMAC-SHA256 over all of that, so no part of it can be changed or left out.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::percent_decode;

/// Why an upload's grant is refused (all 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("no upload grant (sign and expires are needed)")]
    Missing,
    #[error("the upload grant's {0} is malformed")]
    Malformed(&'static str),
    #[error("the upload grant's signature does not match")]
    Wrong,
    #[error("the upload grant expired")]
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadGrant {
    /// The group uploads go to; `None`: the storage's own.
    pub group: Option<String>,
    /// Unix time after which the grant is refused.
    pub expires: i64,
    /// The largest file (bytes); 0: only the storage's `http_upload_max_size`.
    pub max_size: u64,
    /// Extensions allowed, lowercase without the dot; empty: any.
    pub exts: Vec<String>,
    /// Metadata set on every file uploaded under the grant (it wins over form fields).
    pub meta: Vec<(String, String)>,
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string; `None` for an odd length or a character that is not hex.
pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2).map(|i| s.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// HMAC-SHA256 keyed with `secret`, over `context` then `message`: the signatures of grants
/// and of upload URLs.
pub(crate) fn mac(secret: &str, context: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(context);
    mac.update(message);
    mac
}

/// Characters left as they are in a query value (RFC 3986 unreserved).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl UploadGrant {
    /// What is signed: every field, in order, each on its own line (values cannot hold a
    /// newline once encoded, so no field can pass for the next).
    fn canonical(&self) -> String {
        let meta: Vec<String> = self.meta.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let exts: Vec<String> = self.exts.iter().map(|e| encode(e)).collect();
        format!(
            "fastdfs-rs upload v1\n{}\n{}\n{}\n{}\n{}",
            encode(self.group.as_deref().unwrap_or("")),
            self.expires,
            self.max_size,
            exts.join(","),
            meta.join("&")
        )
    }

    fn mac(&self, secret: &str) -> Hmac<Sha256> {
        mac(secret, b"", self.canonical().as_bytes())
    }

    /// The grant as an upload URL's query (without the `?`).
    pub fn to_query(&self, secret: &str) -> String {
        let sign = to_hex(&self.mac(secret).finalize().into_bytes());
        let mut q = Vec::new();
        if let Some(g) = &self.group {
            q.push(format!("group={}", encode(g)));
        }
        q.push(format!("expires={}", self.expires));
        if self.max_size > 0 {
            q.push(format!("max_size={}", self.max_size));
        }
        if !self.exts.is_empty() {
            q.push(format!("ext={}", encode(&self.exts.join(","))));
        }
        if !self.meta.is_empty() {
            let meta: Vec<String> = self.meta.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            q.push(format!("meta={}", encode(&meta.join("&"))));
        }
        q.push(format!("sign={sign}"));
        q.join("&")
    }

    /// The grant a query carries, checked against `secret` and the time `now`.
    pub fn from_query(q: &HashMap<String, String>, secret: &str, now: i64) -> Result<Self, GrantError> {
        let (Some(sign), Some(expires)) = (q.get("sign"), q.get("expires")) else { return Err(GrantError::Missing) };
        let expires = expires.parse().map_err(|_| GrantError::Malformed("expires"))?;
        let max_size = match q.get("max_size") {
            Some(v) => v.parse().map_err(|_| GrantError::Malformed("max_size"))?,
            None => 0,
        };
        let exts = q.get("ext").map_or_else(Vec::new, |v| {
            v.split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect()
        });
        let meta = match q.get("meta") {
            Some(v) => v
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').map(|(k, v)| (percent_decode(k), percent_decode(v))))
                .collect::<Option<Vec<_>>>()
                .ok_or(GrantError::Malformed("meta"))?,
            None => Vec::new(),
        };
        let grant = Self { group: q.get("group").cloned(), expires, max_size, exts, meta };
        let sign = from_hex(sign).ok_or(GrantError::Malformed("sign"))?;
        // Constant time: a forger learns nothing from how long a refusal takes.
        grant.mac(secret).verify_slice(&sign).map_err(|_| GrantError::Wrong)?;
        if now > grant.expires {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }

    /// The largest file under this grant where the storage allows at most `cap`.
    pub fn limit(&self, cap: u64) -> u64 {
        match self.max_size {
            0 => cap,
            m => m.min(cap),
        }
    }

    /// Whether a file named with extension `ext` may be uploaded.
    pub fn allows_ext(&self, ext: &str) -> bool {
        self.exts.is_empty() || self.exts.iter().any(|e| e.eq_ignore_ascii_case(ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_args;

    const SECRET: &str = "the application server's secret";

    fn grant() -> UploadGrant {
        UploadGrant {
            group: Some("group1".into()),
            expires: 2_000_000_000,
            max_size: 10 << 20,
            exts: vec!["jpg".into(), "png".into()],
            meta: vec![("owner".into(), "user 42".into()), ("expire_days".into(), "30".into())],
        }
    }

    #[test]
    fn a_signed_grant_reads_back_whole_and_any_change_is_refused() {
        let q = grant().to_query(SECRET);
        assert_eq!(UploadGrant::from_query(&parse_args(&q), SECRET, 1_900_000_000), Ok(grant()));
        assert_eq!(UploadGrant::from_query(&parse_args(&q), "another secret", 1_900_000_000), Err(GrantError::Wrong));
        for (from, to) in [
            ("max_size=10485760", "max_size=99999999"),
            ("ext=jpg%2Cpng", "ext=jpg%2Cexe"),
            ("group=group1", "group=group2"),
        ] {
            assert!(q.contains(from), "{q}");
            let forged = q.replace(from, to);
            assert_eq!(UploadGrant::from_query(&parse_args(&forged), SECRET, 1), Err(GrantError::Wrong), "{to}");
        }
        let dropped = q.split('&').filter(|p| !p.starts_with("ext=")).collect::<Vec<_>>().join("&");
        assert_eq!(UploadGrant::from_query(&parse_args(&dropped), SECRET, 1), Err(GrantError::Wrong));
        assert_eq!(UploadGrant::from_query(&parse_args(&q), SECRET, 2_000_000_001), Err(GrantError::Expired));
        assert_eq!(UploadGrant::from_query(&parse_args("expires=5"), SECRET, 1), Err(GrantError::Missing));
        assert_eq!(
            UploadGrant::from_query(&parse_args("expires=5&sign=zz"), SECRET, 1),
            Err(GrantError::Malformed("sign"))
        );
    }

    #[test]
    fn no_field_can_carry_the_next_one() {
        // An extension holding a newline and the metadata line: it must not sign as the grant
        // that has that metadata.
        let with_meta = UploadGrant { exts: vec!["jpg".into()], meta: vec![("a".into(), "b".into())], ..grant() };
        let smuggled = UploadGrant { exts: vec!["jpg\na=b".into()], meta: Vec::new(), ..grant() };
        assert_ne!(with_meta.canonical(), smuggled.canonical());
        assert!(!smuggled.canonical().contains("jpg\n"));
    }

    #[test]
    fn extensions_are_matched_without_case() {
        assert!(grant().allows_ext("JPG") && !grant().allows_ext("exe"));
        assert!(UploadGrant::default().allows_ext("anything"));
    }
}
