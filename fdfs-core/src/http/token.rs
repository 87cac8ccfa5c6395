//! The anti-steal token (PROTOCOL.md §9.4):
//! `lowercase_hex(md5(remote_filename_without_group + secret_key + decimal(ts)))`.

use md5::{Digest, Md5};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Wrong length or value (EPERM in the original).
    Mismatch,
    /// `now − ts > token_ttl` (ETIMEDOUT).
    Expired,
}

pub fn anti_steal_token(remote_filename: &str, secret_key: &str, ts: i64) -> String {
    let mut h = Md5::new();
    h.update(remote_filename.as_bytes());
    h.update(secret_key.as_bytes());
    h.update(ts.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `ts = 0` never expires, as in the original.
pub fn check_token(
    remote_filename: &str,
    secret_key: &str,
    token: &str,
    ts: &str,
    ttl: i64,
    now: i64,
) -> Result<(), TokenError> {
    let ts: i64 = ts.parse().map_err(|_| TokenError::Mismatch)?;
    if token.len() != 32 {
        return Err(TokenError::Mismatch);
    }
    // In i128: `now - ts` overflows i64 for a signed `ts` near i64::MIN, which would make the
    // token never expire.
    if ts != 0 && i128::from(now) - i128::from(ts) > i128::from(ttl) {
        return Err(TokenError::Expired);
    }
    let want = anti_steal_token(remote_filename, secret_key, ts);
    // Constant-time comparison: the token is a secret-derived MAC.
    let diff = want.bytes().zip(token.to_ascii_lowercase().bytes()).fold(0u8, |d, (a, b)| d | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(TokenError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_and_rules() {
        // md5("M00/00/00/abc" + "secret" + "1700000000")
        let t = anti_steal_token("M00/00/00/abc", "secret", 1_700_000_000);
        let mut h = Md5::new();
        h.update(b"M00/00/00/abcsecret1700000000");
        let want: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t, want);
        assert_eq!(t.len(), 32);
        assert_eq!(check_token("M00/00/00/abc", "secret", &t, "1700000000", 600, 1_700_000_100), Ok(()));
        assert_eq!(check_token("M00/00/00/abc", "secret", &t.to_uppercase(), "1700000000", 600, 1_700_000_100), Ok(()));
        assert_eq!(
            check_token("M00/00/00/abc", "secret", &t, "1700000000", 600, 1_700_000_700),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check_token("M00/00/00/abc", "other", &t, "1700000000", 600, 1_700_000_100),
            Err(TokenError::Mismatch)
        );
        assert_eq!(
            check_token("M00/00/00/abc", "secret", "short", "1700000000", 600, 1_700_000_100),
            Err(TokenError::Mismatch)
        );
        let ancient = anti_steal_token("M00/00/00/abc", "secret", i64::MIN);
        assert_eq!(
            check_token("M00/00/00/abc", "secret", &ancient, &i64::MIN.to_string(), 600, 1_700_000_100),
            Err(TokenError::Expired),
            "a correctly signed token from the beginning of time has expired"
        );
        let forever = anti_steal_token("M00/00/00/abc", "secret", 0);
        assert_eq!(check_token("M00/00/00/abc", "secret", &forever, "0", 600, i64::MAX), Ok(()));
    }
}
