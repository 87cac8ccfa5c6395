//! fdfs-core: the pieces every fastdfs-rs program shares — the FastDFS wire protocol, file
//! IDs, the `.conf` files, and an async client.

pub mod client;
pub mod config;
pub mod daemon;
pub mod durable;
pub mod file_id;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod timefmt;
pub mod tools;
pub mod tracker;

#[cfg(test)]
pub(crate) mod test_util {
    pub fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
