//! A request's content (the file bytes after an upload, append, modify or sync head): the only
//! storage code that reads content from a socket. It knows the declared length, holds the
//! per-request deadline, computes the CRC32 on the way, and can drain what is left so the
//! connection stays usable after a refusal.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Content up to this size is read whole and handed to the disk in one piece; larger content
/// is streamed through two buffers of [`CHUNK`] bytes, so an in-flight request holds at most
/// this much memory however large its file (a stalled client costs 64 KiB, not its file size).
pub const SMALL: u64 = 64 << 10;
/// One streamed piece: two are in use at once (one being written while the next is read).
pub const CHUNK: usize = 32 << 10;

/// How long a request body may take: each read waits at most `network_timeout`, and after a
/// grace of `network_timeout` the body must keep arriving at `min_body_rate` on average since
/// it began: by `start + grace + t` at least `t × min_rate` bytes. A bound on the whole body
/// alone would grow with the declared size (a 100 MB declaration trickled a byte every few
/// seconds would hold its connection for hours); a rate from the start is what a slow client
/// cannot fake, and a fast one that pauses is not cut off while it is ahead.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimer {
    per_read: Duration,
    /// When the schedule starts: the request's start plus the grace.
    start: tokio::time::Instant,
    min_rate: u64,
    received: u64,
}

impl BodyTimer {
    pub fn new(per_read: Duration, min_rate: u64) -> Self {
        // Capped: any `network_timeout` gives an instant that exists.
        let grace = per_read.min(Duration::from_secs(1 << 32));
        BodyTimer { per_read, start: tokio::time::Instant::now() + grace, min_rate: min_rate.max(1), received: 0 }
    }

    /// How long the next read may wait: until the bytes received so far fall behind the rate.
    fn next_read(&self) -> Duration {
        let earned = Duration::from_secs_f64((self.received as f64 / self.min_rate as f64).min((1u64 << 32) as f64));
        self.per_read.min((self.start + earned).saturating_duration_since(tokio::time::Instant::now()))
    }

    fn received(&mut self, n: usize) {
        self.received += n as u64;
    }
}

/// The content of one request, read at most once.
#[derive(Debug)]
pub struct Content<'a, R> {
    src: &'a mut R,
    left: u64,
    timer: BodyTimer,
    crc: crc32fast::Hasher,
}

impl<'a, R: AsyncRead + Unpin> Content<'a, R> {
    pub fn new(src: &'a mut R, len: u64, timer: BodyTimer) -> Self {
        Content { src, left: len, timer, crc: crc32fast::Hasher::new() }
    }

    /// Bytes not yet read.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// Fills `buf` with the next bytes (all of it, or what is left); returns how many.
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut got = 0;
        while got < want {
            let n = match tokio::time::timeout(self.timer.next_read(), self.src.read(&mut buf[got..want])).await {
                Err(_) => {
                    tracing::warn!(
                        "request body cut off: {} byte(s) in, {} to come, slower than min_body_rate",
                        self.timer.received,
                        self.left - got as u64
                    );
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(r) => r?,
            };
            got += n;
            self.timer.received(n);
        }
        self.crc.update(&buf[..got]);
        self.left -= got as u64;
        Ok(got)
    }

    /// All of it, for content of at most [`SMALL`] bytes.
    pub async fn read_all(&mut self) -> std::io::Result<(Vec<u8>, u32)> {
        if self.left > SMALL {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "content too large to buffer"));
        }
        let mut buf = vec![0u8; self.left as usize];
        self.read_chunk(&mut buf).await?;
        Ok((buf, self.crc()))
    }

    /// The CRC32 of what was read.
    pub fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// Reads and drops the rest (a refused request whose connection stays open).
    pub async fn drain(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; CHUNK.min(self.left as usize)];
        while self.left > 0 {
            self.read_chunk(&mut buf).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_exactly_the_declared_length_with_its_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut src = &data[..];
        let mut c = Content::new(&mut src, 70_000, BodyTimer::new(Duration::from_secs(5), 1));
        let mut buf = vec![0u8; CHUNK];
        let mut out = Vec::new();
        while c.left() > 0 {
            let n = c.read_chunk(&mut buf).await.unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data[..70_000]);
        assert_eq!(c.crc(), crc32fast::hash(&data[..70_000]));
        assert_eq!(src.len(), 30_000, "nothing past the content is consumed");
    }

    #[tokio::test]
    async fn a_short_body_is_an_error_and_drain_consumes_the_rest() {
        let data = [7u8; 10];
        let mut src = &data[..];
        let mut c = Content::new(&mut src, 11, BodyTimer::new(Duration::from_secs(5), 1));
        assert_eq!(c.read_all().await.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        let mut src = &data[..];
        let mut c = Content::new(&mut src, 8, BodyTimer::new(Duration::from_secs(5), 1));
        c.drain().await.unwrap();
        assert_eq!(src.len(), 2);
    }

    #[test]
    fn body_deadlines_follow_the_bytes_received() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let t = BodyTimer::new(Duration::from_secs(u64::MAX), 1);
            assert!(t.next_read() >= Duration::from_secs(1 << 31), "a deadline exists for any timeout");
            let mut t = BodyTimer::new(Duration::from_secs(20), 16 << 10);
            assert_eq!(t.next_read(), Duration::from_secs(20), "the grace first");
            tokio::time::advance(Duration::from_secs(20)).await;
            assert_eq!(t.next_read(), Duration::ZERO, "nothing received after the grace: cut off");
            t.received(32 << 10);
            assert_eq!(t.next_read(), Duration::from_secs(2), "32 KiB at 16 KiB/s buys 2 s");
            tokio::time::advance(Duration::from_secs(60)).await;
            t.received(1);
            assert_eq!(t.next_read(), Duration::ZERO, "a trickle after that does not");
        });
    }
}
