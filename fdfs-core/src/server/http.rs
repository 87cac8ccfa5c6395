//! The daemons' small HTTP side (metrics, and the storage's `http_listen`): a request head at
//! most [`MAX_HEAD`] bytes, the answer whole with its `Content-Length`. A connection carries
//! more requests when the client asks for it (HTTP/1.1, as nginx's upstream `keepalive` does)
//! and the server says so ([`write_reply_with`]'s `keep`); otherwise `Connection: close`. What
//! is served here is read by Prometheus or by nginx's proxy on the same host, so nothing more
//! of HTTP is spoken.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head read.
pub const MAX_HEAD: usize = 8192;

/// A request's head, and the bytes of its body read with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    /// What followed the head in the same reads: the body's first bytes.
    pub rest: Vec<u8>,
    /// The client keeps the connection for another request (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The body's length as declared; `None` when absent or not a number.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// The body is sent in chunks (`Transfer-Encoding` other than identity): its length is
    /// known only at its end.
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    }

    /// The query, without the `?` (empty when none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A request's head, `None` when the peer closed or sent a head longer than [`MAX_HEAD`] or
/// not ended by an empty line. `carried`: bytes already read from the connection past the
/// previous request (empty for the first).
pub async fn read_request_head<S: AsyncRead + Unpin>(
    sock: &mut S,
    carried: Vec<u8>,
) -> std::io::Result<Option<RequestHead>> {
    let mut head = carried;
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    };
    if end > MAX_HEAD {
        return Ok(None);
    }
    let rest = head.split_off(end + 4);
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or("").to_owned(), first.next().unwrap_or("").to_owned());
    let version = first.next().unwrap_or("");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let connection = |token: &str| {
        headers.iter().any(|(k, v)| k == "connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    // A length that is not one number leaves where the body ends unknown: the connection
    // ends with this request (else the body could be read as the next one).
    let lengths: Vec<&str> = headers.iter().filter(|(k, _)| k == "content-length").map(|(_, v)| v.as_str()).collect();
    let framed = lengths.len() <= 1 && lengths.iter().all(|v| v.parse::<u64>().is_ok());
    let keep_alive = framed
        && match version {
            "HTTP/1.1" => !connection("close"),
            "HTTP/1.0" => connection("keep-alive"),
            _ => false,
        };
    Ok(Some(RequestHead { method, target, headers, rest, keep_alive }))
}

/// Writes a whole answer (`status` as `200 OK`); `head_only` (a HEAD request): the headers
/// without the body. `keep`: see [`write_reply_with`].
pub async fn write_reply<S: AsyncWrite + Unpin>(
    sock: &mut S,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    keep: bool,
) -> std::io::Result<()> {
    let headers = [("Content-Type", content_type.to_owned())];
    write_reply_with(sock, status, &headers, if head_only { None } else { Some(body) }, body.len(), keep).await
}

/// Writes an answer with `headers`, `Content-Length: length` and `body` (none for HEAD, 204
/// and the like) in one write. `keep`: the connection serves another request after this one;
/// otherwise the answer says `Connection: close` and the sending side is closed.
pub async fn write_reply_with<S: AsyncWrite + Unpin>(
    sock: &mut S,
    status: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    length: usize,
    keep: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        // A value is never allowed to end the head early.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\n"));
    head.push_str(if keep { "\r\n" } else { "Connection: close\r\n\r\n" });
    let mut whole = head.into_bytes();
    whole.extend_from_slice(body.unwrap_or_default());
    sock.write_all(&whole).await?;
    if keep {
        sock.flush().await
    } else {
        sock.shutdown().await
    }
}

/// How a request body is framed on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The longest chunk-size line or trailer section read of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// Takes a body's content out of what was read of its connection, as it arrives: data, then
/// its end, past which the buffer holds the next request's first bytes.
#[derive(Debug)]
pub struct BodyDecoder {
    chunked: bool,
    state: Decoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// Content bytes left (of the body, or of the current chunk).
    Data(u64),
    /// A chunk-size line.
    Size,
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailer,
    Done,
}

/// What a decoder took from its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The body's end.
    End,
}

/// A chunked body that breaks its framing.
#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct BadFraming(&'static str);

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Length(n) => Self { chunked: false, state: Decoding::Data(n) },
            Framing::Chunked => Self { chunked: true, state: Decoding::Size },
        }
    }

    /// The next piece of the body from `buf`; `Ok(None)` when more must be read first.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, BadFraming> {
        loop {
            match self.state {
                Decoding::Data(0) => {
                    self.state = if self.chunked { Decoding::ChunkEnd } else { Decoding::Done };
                }
                Decoding::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.state = Decoding::Data(left - n as u64);
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                Decoding::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 { Decoding::Trailer } else { Decoding::Data(size) };
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => return Ok(None),
                    _ => return Err(BadFraming("a chunk's size line")),
                },
                Decoding::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BadFraming("a chunk longer than its size"));
                    }
                    buf.advance(2);
                    self.state = Decoding::Size;
                }
                Decoding::Trailer => {
                    let end = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
                    };
                    match end {
                        Some(end) => {
                            buf.advance(end);
                            self.state = Decoding::Done;
                        }
                        None if buf.len() <= MAX_CHUNK_LINE => return Ok(None),
                        None => return Err(BadFraming("its trailer")),
                    }
                }
                Decoding::Done => return Ok(Some(Decoded::End)),
            }
        }
    }
}

/// Serves HTTP on `addr` until shutdown (`what` names it in the log): each connection is
/// handed to `answer`, at most `max_connections` at once (more are closed at accept, so a
/// flood cannot take the descriptors the daemon serves with).
pub async fn serve<F, Fut>(
    what: &'static str,
    addr: std::net::SocketAddr,
    max_connections: usize,
    mut shutdown: super::Shutdown,
    answer: F,
) where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{what} {addr}: {e}; not served");
            return;
        }
    };
    tracing::info!("{what}: http://{addr}/");
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut refused = 0u64;
    loop {
        let sock = tokio::select! {
            _ = shutdown.wait() => return,
            r = listener.accept() => match r {
                Ok((sock, _)) => sock,
                Err(e) => {
                    tracing::warn!("{what}: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!("{what}: {max_connections} connections open, {refused} closed at accept so far");
            }
            continue;
        };
        let served = answer(sock);
        tokio::spawn(async move {
            served.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_head_is_read_and_an_answer_written_whole() {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        client.write_all(b"POST /upload?w=1 HTTP/1.0\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody").await.unwrap();
        let head = read_request_head(&mut server, Vec::new()).await.unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path(), head.query()), ("POST", "/upload", "w=1"));
        assert_eq!((head.content_length(), head.rest.as_slice()), (Some(4), &b"body"[..]));
        assert!(!head.keep_alive && !head.chunked());
        write_reply(&mut server, "200 OK", "image/png", b"png", false, false).await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("Content-Length: 3\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\npng"), "{got}");
    }

    /// Decodes `wire` fed in pieces of `step` bytes: the content, and what follows it.
    fn decode(framing: Framing, wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), BadFraming> {
        let mut dec = BodyDecoder::new(framing);
        let (mut buf, mut content, mut fed) = (BytesMut::new(), Vec::new(), 0);
        loop {
            match dec.next(&mut buf)? {
                Some(Decoded::Data(d)) => content.extend_from_slice(&d),
                Some(Decoded::End) => return Ok((content, [&buf[..], &wire[fed..]].concat())),
                None if fed < wire.len() => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                None => return Err(BadFraming("cut short")),
            }
        }
    }

    #[test]
    fn bodies_are_decoded_in_any_pieces_and_what_follows_is_kept() {
        let chunked = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let plain = b"Wikipedia\r\nGET /next";
        for step in [1, 2, 3, 7, 1000] {
            let got = decode(Framing::Chunked, chunked, step).unwrap();
            assert_eq!((got.0.as_slice(), got.1.as_slice()), (&b"Wikipedia"[..], &b"GET /next"[..]), "step {step}");
            let got = decode(Framing::Length(9), plain, step).unwrap();
            assert_eq!((got.0.as_slice(), got.1.as_slice()), (&b"Wikipedia"[..], &b"\r\nGET /next"[..]));
        }
        assert_eq!(decode(Framing::Chunked, b"0\r\n\r\n", 1).unwrap().0, b"");
        assert!(decode(Framing::Chunked, b"4\r\nWikipedia\r\n0\r\n\r\n", 3).is_err());
        assert!(decode(Framing::Chunked, b"zz\r\n", 3).is_err());
        assert!(decode(Framing::Chunked, &[b'1'; 5000], 100).is_err());
        assert!(decode(Framing::Chunked, b"ffffffffffffffffff\r\n", 100).is_err());
    }

    #[tokio::test]
    async fn an_endless_head_is_given_up() {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        client.write_all(&vec![b'a'; MAX_HEAD + 10]).await.unwrap();
        assert_eq!(read_request_head(&mut server, Vec::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_kept_connection_serves_the_next_request_from_what_was_carried() {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        let two = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
        client.write_all(two).await.unwrap();
        let first = read_request_head(&mut server, Vec::new()).await.unwrap().unwrap();
        assert!(first.keep_alive && first.path() == "/a");
        write_reply(&mut server, "200 OK", "text/plain", b"a", false, true).await.unwrap();
        let second = read_request_head(&mut server, first.rest).await.unwrap().unwrap();
        assert!(!second.keep_alive && second.path() == "/b");
        write_reply(&mut server, "200 OK", "text/plain", b"b", false, false).await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
        assert_eq!(got.matches("Connection: close").count(), 1, "{got}");
        for unframed in ["Content-Length: x1", "Content-Length: 1\r\nContent-Length: 2"] {
            let (mut client, mut server) = tokio::io::duplex(1024);
            client.write_all(format!("GET /d HTTP/1.1\r\n{unframed}\r\n\r\n").as_bytes()).await.unwrap();
            assert!(!read_request_head(&mut server, Vec::new()).await.unwrap().unwrap().keep_alive, "{unframed}");
        }
        let http10 = b"GET /c HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(http10).await.unwrap();
        assert!(read_request_head(&mut server, Vec::new()).await.unwrap().unwrap().keep_alive);
    }
}
