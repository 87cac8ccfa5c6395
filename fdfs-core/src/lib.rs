//! fdfs-core: the pieces every fastdfs-rs program shares — the FastDFS wire protocol, file
//! IDs, the `.conf` files, and an async client.
//!
//! The layers: [`protocol`] and [`file_id`] at the bottom (pure, golden-tested), [`config`],
//! [`http`] (the nginx module's request logic), [`durable`] and [`net`]; with the `runtime`
//! feature (default) the async [`client`], the shared [`server`] plumbing, [`tracker`] and
//! [`storage`] side by side (neither imports the other), and the [`tools`].

pub mod config;
pub mod durable;
pub mod file_id;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod locked;
pub mod net;
pub mod protocol;
pub mod timefmt;
pub mod trunk;

#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod daemon;
#[cfg(feature = "runtime")]
pub mod grant;
#[cfg(feature = "runtime")]
pub mod logging;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod storage;
#[cfg(feature = "runtime")]
pub mod tools;
#[cfg(feature = "runtime")]
pub mod tracker;
#[cfg(feature = "runtime")]
pub mod zero_copy;

#[cfg(test)]
pub(crate) mod test_util {
    pub fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
