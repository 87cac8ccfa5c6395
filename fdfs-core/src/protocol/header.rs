//! The 10-byte packet header shared by every request and response, tracker and storage alike.
//!
//! | offset | size | field                                          |
//! |--------|------|------------------------------------------------|
//! | 0      | 8    | `pkg_len`, i64 BE, body length (header excluded)|
//! | 8      | 1    | command code; always 100 (`RESP`) in responses |
//! | 9      | 1    | status: errno in responses, flags in 3 requests |

use bytes::{BufMut, BytesMut};

use super::codec::DecodeError;
use super::Status;

pub const HEADER_LEN: usize = 10;
/// The command byte of every response.
pub const RESP_CMD: u8 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub pkg_len: u64,
    pub cmd: u8,
    pub status: u8,
}

impl Header {
    pub fn request(cmd: impl Into<u8>, pkg_len: usize) -> Self {
        Self { pkg_len: pkg_len as u64, cmd: cmd.into(), status: 0 }
    }

    pub fn response(status: Status, pkg_len: usize) -> Self {
        Self { pkg_len: pkg_len as u64, cmd: RESP_CMD, status: status.0 }
    }

    /// Decodes a header. A negative `pkg_len` is a protocol error (the C servers drop the
    /// connection); `max_body` bounds what the caller is willing to buffer or stream.
    pub fn decode(buf: &[u8; HEADER_LEN], max_body: u64) -> Result<Self, DecodeError> {
        let len = i64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
        if len < 0 || len as u64 > max_body {
            return Err(DecodeError::OutOfRange { field: "pkg_len", value: len });
        }
        Ok(Self { pkg_len: len as u64, cmd: buf[8], status: buf[9] })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&(self.pkg_len as i64).to_be_bytes());
        out[8] = self.cmd;
        out[9] = self.status;
        out
    }

    pub fn put(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.encode());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_query_store_header() {
        // From the capture `upload_file_4k`: 101 with an empty body.
        let raw = [0, 0, 0, 0, 0, 0, 0, 0, 0x65, 0];
        let h = Header::decode(&raw, 1 << 20).unwrap();
        assert_eq!(h, Header { pkg_len: 0, cmd: 101, status: 0 });
        assert_eq!(h.encode(), raw);
    }

    #[test]
    fn golden_error_response_header() {
        let h = Header::response(Status::EINVAL, 0);
        assert_eq!(h.encode(), [0, 0, 0, 0, 0, 0, 0, 0, 100, 22]);
    }

    #[test]
    fn negative_and_oversized_lengths_are_rejected() {
        let mut raw = [0xffu8; HEADER_LEN];
        raw[8] = 11;
        assert!(Header::decode(&raw, u64::MAX).is_err());
        let raw = Header::request(11u8, 1 << 30).encode();
        assert!(Header::decode(&raw, 1 << 20).is_err());
        assert!(Header::decode(&raw, 1 << 30).is_ok());
    }
}
