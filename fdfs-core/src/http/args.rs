//! Query strings as the module reads them: `&`-separated `key=value`, values %-decoded, at
//! most 32 pairs.

use std::collections::HashMap;

const MAX_ARGS: usize = 32;

pub fn parse_args(args: &str) -> HashMap<String, String> {
    args.split('&')
        .filter(|p| !p.is_empty())
        .take(MAX_ARGS)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

/// `%XX` and `+` decoding; malformed escapes are kept as they are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a = parse_args("token=abc&ts=12&filename=a%20b%2Bc.jpg&redirect");
        assert_eq!(a["token"], "abc");
        assert_eq!(a["filename"], "a b+c.jpg");
        assert!(a.contains_key("redirect"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%e4%b8%ad"), "中");
        assert_eq!(parse_args(&"a=1&".repeat(100)).len(), 1);
    }
}
