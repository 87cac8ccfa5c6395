//! The accept loop both daemons use: `allow_hosts` checked at accept time (refused peers are
//! dropped without an answer, as FastDFS does), at most `max_connections` at once, and a
//! shutdown signal that stops accepting and lets running connections see it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::allow::AllowHosts;
use super::stream::PeerStream;

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
}

/// Accepts until shutdown; `handle` runs once per allowed connection.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    allow: AllowHosts,
    max_connections: usize,
    mut shutdown: Shutdown,
    handle: F,
) where
    F: Fn(PeerStream, SocketAddr, Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !allow.allows(peer.ip()) {
            log::warn!("refused connection from {peer}: not in allow_hosts");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            log::warn!("refused connection from {peer}: max_connections ({max_connections}) reached");
            continue;
        };
        let fut = handle(PeerStream::new(sock), peer, shutdown.clone());
        tokio::spawn(async move {
            fut.await;
            drop(permit);
        });
    }
}
