//! The accept loop both daemons use: `allow_hosts` checked at accept time (refused peers are
//! dropped without an answer, as FastDFS does), at most `max_connections` at once, and a
//! shutdown signal that stops accepting and lets running connections see it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::stream::PeerStream;
use super::threads::ConnectionThreads;
use crate::config::AllowHosts;
use crate::locked::MutexExt;

/// Broadcasts "stop" to every task that holds a receiver.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered (or the trigger is dropped).
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Runs `attempt` until it succeeds, logging each failure (`what: error`) and pausing
    /// `pause` between tries. `true` once it succeeded, `false` if stopped first.
    pub async fn retry<F, Fut, E>(&mut self, what: &str, pause: std::time::Duration, mut attempt: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        loop {
            let r = tokio::select! {
                _ = self.wait() => return false,
                r = attempt() => r,
            };
            match r {
                Ok(()) => return true,
                Err(e) => tracing::warn!("{what}: {e}; retrying in {pause:?}"),
            }
            tokio::select! {
                _ = self.wait() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// How many connections each source address has open.
#[derive(Debug, Default)]
struct PerAddress {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerAddress {
    /// Counts one more from `ip` unless it already has `max`.
    fn try_open(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<AddressSlot> {
        let mut m = self.open.locked();
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot { owner: self.clone(), ip })
    }
}

/// One open connection of an address; dropping it gives the slot back.
#[derive(Debug)]
struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: std::net::IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self.owner.open.locked();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Connection counts of a daemon (StatBuff and the cluster stats report them), kept by the
/// accept loop for every daemon alike.
#[derive(Debug, Default)]
pub struct ConnCounts {
    current: AtomicI32,
    max: AtomicI32,
}

impl ConnCounts {
    pub fn opened(&self) {
        let now = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(now, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.current.fetch_sub(1, Ordering::Relaxed);
    }

    /// (current, max).
    pub fn get(&self) -> (i32, i32) {
        (self.current.load(Ordering::Relaxed), self.max.load(Ordering::Relaxed))
    }
}

/// Limits on what peers may hold open, and where the accept loop counts connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub per_ip: usize,
    pub counts: Arc<ConnCounts>,
}

/// Logs refusals without letting a flood of them flood the log: the first one, then a count
/// at most every 10 seconds.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn refused(&mut self, what: std::fmt::Arguments<'_>) {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10)) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!("refused connection {what} (and {} more since the last report)", self.suppressed);
        } else {
            tracing::warn!("refused connection {what}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Accepts until shutdown; `handle` runs once per allowed connection, on one of `threads`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    allow: AllowHosts,
    limits: ConnectionLimits,
    threads: &ConnectionThreads,
    mut shutdown: Shutdown,
    handle: F,
) where
    F: Fn(PeerStream, SocketAddr, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let max_connections = limits.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let mut refusals = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allow.allows(peer.ip()) {
            tracing::warn!("refused connection from {peer}: not in allow_hosts");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.refused(format_args!("from {peer}: max_connections ({max_connections}) reached"));
            continue;
        };
        let Some(slot) = per_address.try_open(peer.ip(), limits.per_ip) else {
            refusals.refused(format_args!("from {peer}: max_connections_per_ip ({}) reached", limits.per_ip));
            continue;
        };
        // Moved to the connection's thread: its socket is registered with that thread's loop.
        let sock = match sock.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("connection from {peer}: {e}");
                continue;
            }
        };
        let (handle, sd, counts) = (handle.clone(), shutdown.clone(), limits.counts.clone());
        counts.opened();
        let connection = async move {
            match tokio::net::TcpStream::from_std(sock) {
                Ok(sock) => handle(PeerStream::new(sock), peer, sd).await,
                Err(e) => tracing::warn!("connection from {peer}: {e}"),
            }
            counts.closed();
            drop(slot);
            drop(permit);
        };
        if !threads.run(connection) {
            // Dropped unrun: what it would have counted at its end is counted here.
            limits.counts.closed();
            tracing::error!("connection from {peer} dropped: its thread is gone");
        }
    }
    // Stop accepting, then let requests in flight finish: idle connections see the shutdown
    // and leave at once, busy ones after their request (bounded, so a stuck peer cannot hold
    // the daemon; what is cut then is rolled back or cleaned up at the next start).
    drop(listener);
    let all = u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(
            "{} connection(s) still busy {DRAIN:?} after the stop signal; stopping anyway",
            all as usize - permits.available_permits()
        );
    }
}

/// How long a stopping daemon waits for requests in flight.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_and_keepalive_from_the_listener() {
        let listener = PeerStream::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let threads = ConnectionThreads::start("test", 1, 1).unwrap();
        let limits = ConnectionLimits { max_connections: 4, per_ip: 4, counts: Arc::default() };
        let (trigger, shutdown) = shutdown_pair();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            serve(listener, AllowHosts::any(), limits, &threads, shutdown, move |peer, _, _| {
                let sock = socket2::SockRef::from(&peer);
                let _ = tx.send((
                    sock.tcp_nodelay().unwrap(),
                    sock.keepalive().unwrap(),
                    sock.tcp_keepalive_time().unwrap(),
                ));
                async move { drop(peer) }
            })
            .await
        });
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (nodelay, keepalive, idle) = rx.recv().await.unwrap();
        assert!(nodelay, "answers are not held back by Nagle");
        assert!(keepalive, "keepalive probes find peers gone without a FIN");
        assert_eq!(idle, std::time::Duration::from_secs(120));
        trigger.trigger();
        server.await.unwrap();
    }
}
