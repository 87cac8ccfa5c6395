//! Idle connections kept per address so repeated operations skip the TCP handshake. A
//! connection goes back only after a fully successful exchange; one idle longer than
//! `max_idle` is dropped instead of tested, as the C client's pool does, and so is one the
//! server has closed meanwhile (a peek, no round trip).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connection::Connection;
use super::error::ClientResult;
use crate::locked::MutexExt;

#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Connection>>>,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    max_idle: Duration,
    enabled: bool,
    /// The local address new connections are made from, if any.
    bind: Option<std::net::IpAddr>,
}

/// Most idle connections kept per address.
const MAX_IDLE_PER_ADDR: usize = 16;

impl Pool {
    pub fn new(connect_timeout: Duration, network_timeout: Duration, max_idle: Duration, enabled: bool) -> Self {
        Self { idle: Mutex::new(HashMap::new()), connect_timeout, network_timeout, max_idle, enabled, bind: None }
    }

    /// New connections are made from `bind` (a storage's `bind_addr`: its peers know it by it).
    pub fn bound_to(mut self, bind: Option<std::net::IpAddr>) -> Self {
        self.bind = bind;
        self
    }

    pub async fn get(&self, addr: &str) -> ClientResult<Connection> {
        if self.enabled {
            let reused = {
                let mut idle = self.idle.locked();
                let list = idle.entry(addr.to_owned()).or_default();
                let now = Instant::now();
                list.retain(|c| now.duration_since(c.last_used) < self.max_idle);
                // Only the one taken is peeked at: a peek is a syscall, and every idle one was
                // peeked at on every request before.
                std::iter::from_fn(|| list.pop()).find(|c| !c.is_stale())
            };
            if let Some(c) = reused {
                return Ok(c);
            }
        }
        Connection::connect_from(addr, self.bind, self.connect_timeout, self.network_timeout).await
    }

    /// Returns a connection after a successful exchange.
    pub fn put(&self, conn: Connection) {
        if !self.enabled || !conn.is_reusable() {
            return;
        }
        let mut idle = self.idle.locked();
        let list = idle.entry(conn.addr().to_owned()).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(conn);
        }
    }
}
