//! The threads that serve connections (`work_threads`, C's meaning): each runs an event loop of
//! its own (a single-threaded tokio runtime with its own blocking pool), and each accepted
//! connection lives on one of them, the least loaded, for its whole life.
//!
//! One shared work-stealing runtime served them before. On two cores its idle workers were woken
//! to look for work whenever one found some: a 4 KiB upload at one client cost several futex
//! wake-ups on threads that then found nothing, and the whole daemon on one thread
//! (`work_threads = 1`) was measured 1.2-1.3x faster at one client, and slower at 16 (one core
//! left idle). A thread per loop keeps a connection's requests on one thread and still spreads
//! connections over the cores. The daemon's own tasks (reports, replication, elections) run on
//! the runtime that accepts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Loop {
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections it serves now.
    load: Arc<AtomicUsize>,
}

/// The connection threads of a daemon; dropping it lets them end once their connections have.
pub struct ConnectionThreads {
    loops: Vec<Loop>,
    first: tokio::runtime::Handle,
}

impl std::fmt::Debug for ConnectionThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionThreads").field("threads", &self.loops.len()).finish()
    }
}

impl ConnectionThreads {
    /// Starts `count` threads named `<name>-<i>`, but no more than the machine has cores (more
    /// loops than cores only take turns on them: measured slower at 16 clients on two cores),
    /// each allowed `max_blocking` blocking-pool threads (file reads and other calls that may
    /// block).
    pub fn start(name: &str, count: usize, max_blocking: usize) -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let asked = count;
        let count = count.clamp(1, cores);
        tracing::info!("{count} thread(s) serve connections (work_threads = {asked}, {cores} core(s))");
        let mut loops = Vec::with_capacity(count);
        let mut first = None;
        for i in 0..count {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(max_blocking.max(1))
                .thread_name(format!("{name}-{i}-blocking"))
                .build()?;
            if i == 0 {
                first = Some(rt.handle().clone());
            }
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                rt.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                });
                // The connections are done (the accept loop drained them); a blocking call that
                // never returns must not hold the daemon's exit.
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
            loops.push(Loop { jobs, load: Arc::default() });
        }
        let first = first.ok_or_else(|| io::Error::other("no thread"))?;
        Ok(Self { loops, first })
    }

    /// The first thread's loop, where the daemon's own tasks run (replication, reports): a
    /// lone connection lands there too, so the replication an upload wakes runs on the thread
    /// that stored it instead of waking another.
    pub fn first(&self) -> &tokio::runtime::Handle {
        &self.first
    }

    /// Runs `connection` (which must make its tokio socket inside, on the thread it runs on) on
    /// the thread serving the fewest connections (the first of a tie). `false` if that thread
    /// is gone.
    pub fn run(&self, connection: impl Future<Output = ()> + Send + 'static) -> bool {
        let Some(chosen) = self.loops.iter().min_by_key(|l| l.load.load(Ordering::Relaxed)) else {
            return false;
        };
        let load = chosen.load.clone();
        load.fetch_add(1, Ordering::Relaxed);
        let job = Box::pin(async move {
            connection.await;
            load.fetch_sub(1, Ordering::Relaxed);
        });
        if chosen.jobs.send(job).is_err() {
            chosen.load.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_spread_and_each_stays_on_one_thread() {
        let threads = ConnectionThreads::start("test", 3, 2).unwrap();
        let n = std::thread::available_parallelism().map_or(1, usize::from).min(3);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (release, hold) = tokio::sync::watch::channel(false);
        for i in 0..2 * n {
            let (tx, mut hold) = (tx.clone(), hold.clone());
            assert!(threads.run(async move {
                let first = std::thread::current().name().map(str::to_owned);
                let _ = hold.wait_for(|go| *go).await;
                tokio::task::yield_now().await;
                let second = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((i, first, second));
            }));
        }
        drop(tx);
        let _ = release.send(true);
        let mut per_thread = std::collections::HashMap::<String, usize>::new();
        while let Some((_, first, second)) = rx.recv().await {
            assert_eq!(first, second, "a connection stays on its thread");
            *per_thread.entry(first.unwrap()).or_default() += 1;
        }
        assert_eq!(per_thread.len(), n, "one thread per core at most: {per_thread:?}");
        assert!(per_thread.values().all(|&n| n == 2), "least loaded first: {per_thread:?}");
    }
}
