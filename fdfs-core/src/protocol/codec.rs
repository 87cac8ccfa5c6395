//! Byte-level primitives shared by every message: a checked reader over a body slice and
//! writer helpers for FastDFS's big-endian integers and zero-padded fixed-width text.
//!
//! Nothing here touches a socket. Every read is bounds-checked and returns a typed error, so no
//! byte string can make a decoder panic; nothing allocates more than the slice it was given.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Why a body could not be decoded. All of them are answered with `EINVAL` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("body too short: need {need} bytes, got {got}")]
    Short { need: usize, got: usize },
    #[error("{extra} unexpected trailing bytes")]
    Trailing { extra: usize },
    #[error("bad body length {len}: {why}")]
    BadLength { len: usize, why: &'static str },
    #[error("field {field} out of range: {value}")]
    OutOfRange { field: &'static str, value: i64 },
    #[error("invalid {0}")]
    Invalid(&'static str),
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// A cursor over one packet body. Fixed-width text is read up to its first NUL, because C
/// senders leave garbage after the NUL (seen in captured sync requests).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Short { need: self.pos + n, got: self.buf.len() });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i8(&mut self) -> DecodeResult<i8> {
        Ok(self.u8()? as i8)
    }

    pub fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An i64 length or size field that must lie in `0..=max`.
    pub fn len_field(&mut self, field: &'static str, max: u64) -> DecodeResult<u64> {
        let v = self.i64()?;
        if v < 0 || v as u64 > max {
            return Err(DecodeError::OutOfRange { field, value: v });
        }
        Ok(v as u64)
    }

    /// Fixed-width text field: the bytes before the first NUL, as UTF-8.
    pub fn fixed_str(&mut self, width: usize) -> DecodeResult<String> {
        let raw = self.bytes(width)?;
        text(until_nul(raw))
    }

    /// Variable-length text of exactly `n` bytes (not NUL-terminated on the wire).
    pub fn str(&mut self, n: usize) -> DecodeResult<String> {
        text(self.bytes(n)?)
    }

    /// The rest of the body as text.
    pub fn rest_str(&mut self) -> DecodeResult<String> {
        let n = self.remaining();
        self.str(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Rejects trailing bytes: a decoder calls this last.
    pub fn finish(&self) -> DecodeResult<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

pub fn until_nul(raw: &[u8]) -> &[u8] {
    match raw.iter().position(|&b| b == 0) {
        Some(i) => &raw[..i],
        None => raw,
    }
}

fn text(raw: &[u8]) -> DecodeResult<String> {
    std::str::from_utf8(raw).map(str::to_owned).map_err(|_| DecodeError::Invalid("non-UTF-8 text field"))
}

/// Requires the body to be exactly `want` bytes.
pub fn expect_len(body: &[u8], want: usize) -> DecodeResult<()> {
    match body.len().cmp(&want) {
        std::cmp::Ordering::Less => Err(DecodeError::Short { need: want, got: body.len() }),
        std::cmp::Ordering::Greater => Err(DecodeError::Trailing { extra: body.len() - want }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Writes `s` left-aligned in a zero-filled field of `width` bytes, cut at `width` like the C
/// writers do (a 16-character group name fills its field with no NUL).
pub fn put_fixed(buf: &mut BytesMut, s: &str, width: usize) {
    let b = s.as_bytes();
    let n = b.len().min(width);
    buf.put_slice(&b[..n]);
    buf.put_bytes(0, width - n);
}

pub fn put_i64(buf: &mut BytesMut, v: i64) {
    buf.put_i64(v);
}

pub fn put_i32(buf: &mut BytesMut, v: i32) {
    buf.put_i32(v);
}

/// Length fields are i64 on the wire; lengths we produce always fit.
pub fn put_len(buf: &mut BytesMut, v: usize) {
    buf.put_i64(v as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_stops_at_nul_and_ignores_garbage() {
        let raw = b"group1\0\x7f\0\x00\x88\xf0\x05\x6b\0\0";
        let mut r = Reader::new(raw);
        assert_eq!(r.fixed_str(16).unwrap(), "group1");
        r.finish().unwrap();
    }

    #[test]
    fn full_width_text_without_nul() {
        let mut r = Reader::new(b"abcdefghijklmnop");
        assert_eq!(r.fixed_str(16).unwrap(), "abcdefghijklmnop");
    }

    #[test]
    fn short_reads_are_errors() {
        let mut r = Reader::new(&[0, 0, 0]);
        assert_eq!(r.i64(), Err(DecodeError::Short { need: 8, got: 3 }));
        assert!(Reader::new(&[1]).finish().is_err());
    }

    #[test]
    fn len_field_rejects_negative_and_huge() {
        let mut b = BytesMut::new();
        put_i64(&mut b, -1);
        put_i64(&mut b, 1 << 40);
        let mut r = Reader::new(&b);
        assert!(matches!(r.len_field("x", 100), Err(DecodeError::OutOfRange { .. })));
        assert!(matches!(r.len_field("x", 100), Err(DecodeError::OutOfRange { .. })));
    }

    #[test]
    fn put_fixed_pads_and_cuts() {
        let mut b = BytesMut::new();
        put_fixed(&mut b, "ab", 4);
        put_fixed(&mut b, "abcdef", 4);
        assert_eq!(&b[..], b"ab\0\0abcd");
    }
}
