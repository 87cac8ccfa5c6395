//! One TCP connection to a tracker or storage: the only client code that reads or writes a
//! socket. Requests go out as header + body in one write (the Python client reads the header
//! with a single `recv(10)`, and small writes cost round trips); answers are read through a
//! buffer, so a small answer's header and body come in one `recv` (and one shorter than the
//! buffer tells tokio the socket is drained: no `recv` that finds nothing before the next
//! answer). Every read and write is bounded by `network_timeout`.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{ClientError, ClientResult};
use crate::protocol::{Command, Header, Status, HEADER_LEN, RESP_CMD};

/// Answers larger than this are never buffered in memory (downloads stream instead).
pub const MAX_BUFFERED_ANSWER: u64 = 64 << 20;

/// How much one read of an answer asks for: a small file's download, header and content.
const READ_AHEAD: usize = 64 << 10;

#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// What was read of answers and not yet taken.
    read: BytesMut,
    addr: String,
    timeout: Duration,
    /// False once a request failed midway: the C client closes such connections, and so do we.
    reusable: bool,
    pub(crate) last_used: Instant,
}

impl Connection {
    pub async fn connect(addr: &str, connect_timeout: Duration, network_timeout: Duration) -> ClientResult<Self> {
        Self::connect_from(addr, None, connect_timeout, network_timeout).await
    }

    /// Connects from a chosen local address (`client_bind`; tests use 127.0.0.x to play
    /// several hosts).
    pub async fn connect_from(
        addr: &str,
        local_ip: Option<std::net::IpAddr>,
        connect_timeout: Duration,
        network_timeout: Duration,
    ) -> ClientResult<Self> {
        let connecting = async {
            let Some(ip) = local_ip else { return TcpStream::connect(addr).await };
            let target = tokio::net::lookup_host(addr)
                .await?
                .find(|a| a.is_ipv4() == ip.is_ipv4())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address of that family"))?;
            let sock = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            sock.bind(std::net::SocketAddr::new(ip, 0))?;
            sock.connect(target).await
        };
        let stream = match tokio::time::timeout(connect_timeout, connecting).await {
            Err(_) => return Err(ClientError::Timeout { addr: addr.to_owned() }),
            Ok(Err(e)) => return Err(ClientError::Io { addr: addr.to_owned(), source: e }),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            read: BytesMut::new(),
            addr: addr.to_owned(),
            timeout: network_timeout,
            reusable: true,
            last_used: Instant::now(),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The socket, for answers that are not one packet (26's list, ended by the connection);
    /// taken before any answer was read, so nothing read is left behind.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads until at least `want` bytes of answers are buffered.
    async fn fill(&mut self, want: usize) -> ClientResult<()> {
        while self.read.len() < want {
            self.read.reserve(READ_AHEAD.max(want - self.read.len()));
            let n = timed(&self.addr, &mut self.reusable, self.timeout, self.stream.read_buf(&mut self.read)).await?;
            if n == 0 {
                self.reusable = false;
                let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-answer");
                return Err(ClientError::Io { addr: self.addr.clone(), source: eof });
            }
        }
        Ok(())
    }

    /// Whether an idle connection is no longer fit to send on: the server closed it (it
    /// restarted, or dropped an idle connection as older servers do) or sent bytes nobody asked
    /// for. One non-blocking peek; nothing is consumed.
    pub fn is_stale(&self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }

    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends one packet: header and `body` in one write. `extra_len` declares content that
    /// [`Self::send_content`] streams afterwards.
    pub async fn send(&mut self, cmd: Command, status: u8, body: &[u8], extra_len: u64) -> ClientResult<()> {
        let mut h = Header::request(cmd, body.len());
        h.pkg_len += extra_len;
        h.status = status;
        let mut buf = BytesMut::with_capacity(HEADER_LEN + body.len());
        h.put(&mut buf);
        buf.extend_from_slice(body);
        timed(&self.addr, &mut self.reusable, self.timeout, self.stream.write_all(&buf)).await
    }

    /// Streams exactly `len` bytes of content from `src` after a [`Self::send`] that declared
    /// them. The deadline grows with the size (one `network_timeout` per MiB on top).
    pub async fn send_content(&mut self, src: &mut (impl AsyncRead + Unpin + ?Sized), len: u64) -> ClientResult<()> {
        let deadline = self.timeout + self.timeout.saturating_mul((len >> 20).min(u32::MAX as u64) as u32);
        let mut limited = src.take(len);
        let n =
            timed(&self.addr, &mut self.reusable, deadline, tokio::io::copy(&mut limited, &mut self.stream)).await?;
        if n != len {
            self.reusable = false;
            return Err(ClientError::Local(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("local source ended after {n} of {len} bytes"),
            )));
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` after a [`Self::send`] that declared them,
    /// with sendfile(2): no copy through user space (replication of whole files and ranges).
    pub async fn send_file(&mut self, file: &std::fs::File, offset: u64, len: u64) -> ClientResult<()> {
        let deadline = self.timeout + self.timeout.saturating_mul((len >> 20).min(u32::MAX as u64) as u32);
        let r =
            tokio::time::timeout(deadline, crate::zero_copy::send_file(&self.stream, file, offset, len, self.timeout))
                .await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.reusable = false;
                Err(ClientError::Io { addr: self.addr.clone(), source: e })
            }
            Err(_) => {
                self.reusable = false;
                Err(ClientError::Timeout { addr: self.addr.clone() })
            }
        }
    }

    /// Reads an answer header; a non-zero status becomes [`ClientError::Status`] and retires
    /// the connection (the body, if any, is never read).
    pub async fn recv_header(&mut self) -> ClientResult<Header> {
        self.fill(HEADER_LEN).await?;
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.read.split_to(HEADER_LEN));
        self.reusable = false;
        let h = Header::decode(&raw, i64::MAX as u64)
            .map_err(|e| ClientError::Decode { addr: self.addr.clone(), source: e })?;
        if h.cmd != RESP_CMD {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                why: format!("answer cmd {} is not 100", h.cmd),
            });
        }
        if h.status != 0 {
            return Err(ClientError::Status { status: Status(h.status) });
        }
        self.reusable = true;
        self.last_used = Instant::now();
        Ok(h)
    }

    /// Reads an answer body of `len` bytes into memory (refused above `max`).
    pub async fn recv_body(&mut self, len: u64, max: u64) -> ClientResult<Bytes> {
        if len > max {
            self.reusable = false;
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                why: format!("answer of {len} bytes exceeds {max}"),
            });
        }
        let len = len as usize;
        if len <= READ_AHEAD {
            self.fill(len).await?;
            return Ok(self.read.split_to(len).freeze());
        }
        // A large answer: what is buffered, then the rest read straight into place.
        let mut buf = vec![0u8; len];
        let have = self.read.len().min(len);
        buf[..have].copy_from_slice(&self.read.split_to(have));
        timed(&self.addr, &mut self.reusable, self.timeout, self.stream.read_exact(&mut buf[have..])).await?;
        Ok(buf.into())
    }

    /// Streams an answer body of `len` bytes into `dst`; each read gets `network_timeout`.
    pub async fn recv_body_into(&mut self, len: u64, dst: &mut (impl AsyncWrite + Unpin)) -> ClientResult<()> {
        let have = self.read.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        if have > 0 {
            let buffered = self.read.split_to(have);
            if let Err(e) = dst.write_all(&buffered).await {
                self.reusable = false;
                return Err(ClientError::Local(e));
            }
        }
        let mut left = len - have as u64;
        let mut buf = vec![0u8; (256 << 10).min(left as usize)];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = timed(&self.addr, &mut self.reusable, self.timeout, self.stream.read(&mut buf[..want])).await?;
            if n == 0 {
                self.reusable = false;
                return Err(ClientError::Protocol {
                    addr: self.addr.clone(),
                    why: "connection closed mid-answer".into(),
                });
            }
            if let Err(e) = dst.write_all(&buf[..n]).await {
                self.reusable = false;
                return Err(ClientError::Local(e));
            }
            left -= n as u64;
        }
        Ok(())
    }

    /// One request with an in-memory body, one in-memory answer.
    pub async fn call(&mut self, cmd: Command, body: &[u8]) -> ClientResult<Bytes> {
        self.call_with_status(cmd, 0, body).await
    }

    pub async fn call_with_status(&mut self, cmd: Command, status: u8, body: &[u8]) -> ClientResult<Bytes> {
        self.send(cmd, status, body, 0).await?;
        let h = self.recv_header().await?;
        self.recv_body(h.pkg_len, MAX_BUFFERED_ANSWER).await
    }

    /// Sends QUIT (no answer comes) and closes.
    pub async fn quit(mut self) {
        let _ = self.send(Command::Quit, 0, &[], 0).await;
        let _ = self.stream.shutdown().await;
    }

    /// ACTIVE_TEST: is the peer still answering on this connection?
    pub async fn active_test(&mut self) -> ClientResult<()> {
        let body = self.call(Command::ActiveTest, &[]).await?;
        expect_empty(&self.addr, &body)
    }
}

pub(crate) fn expect_empty(addr: &str, body: &[u8]) -> ClientResult<()> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Protocol {
            addr: addr.to_owned(),
            why: format!("expected an empty answer, got {} bytes", body.len()),
        })
    }
}

/// Runs one socket operation under `timeout`; any failure retires the connection.
async fn timed<T>(
    addr: &str,
    reusable: &mut bool,
    timeout: Duration,
    f: impl Future<Output = std::io::Result<T>>,
) -> ClientResult<T> {
    let r = match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(ClientError::Timeout { addr: addr.to_owned() }),
        Ok(Err(e)) => Err(ClientError::Io { addr: addr.to_owned(), source: e }),
        Ok(Ok(v)) => Ok(v),
    };
    if r.is_err() {
        *reusable = false;
    }
    r
}
