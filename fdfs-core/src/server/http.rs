//! The daemons' small HTTP side (metrics, and the storage's thumbnail maker): one request per
//! connection, its head at most [`MAX_HEAD`] bytes, no body, the answer whole with
//! `Connection: close`. What is served here is read by Prometheus or by nginx's proxy on the
//! same host, so nothing more of HTTP is spoken.

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
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query, without the `?` (empty when none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// A request's head, `None` when the peer closed or sent a head longer than [`MAX_HEAD`] or
/// not ended by an empty line.
pub async fn read_request_head<S: AsyncRead + Unpin>(sock: &mut S) -> std::io::Result<Option<RequestHead>> {
    let mut head = Vec::with_capacity(1024);
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
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Some(RequestHead { method, target, headers, rest }))
}

/// Writes a whole answer (`status` as `200 OK`), then closes the sending side. `head_only`
/// (a HEAD request): the headers without the body.
pub async fn write_reply<S: AsyncWrite + Unpin>(
    sock: &mut S,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let headers = [("Content-Type", content_type.to_owned())];
    write_reply_with(sock, status, &headers, if head_only { None } else { Some(body) }, body.len()).await
}

/// Writes an answer with `headers`, `Content-Length: length` and `body` (none for HEAD, 204
/// and the like), then closes the sending side.
pub async fn write_reply_with<S: AsyncWrite + Unpin>(
    sock: &mut S,
    status: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
    length: usize,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        // A value is never allowed to end the head early.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\nConnection: close\r\n\r\n"));
    sock.write_all(head.as_bytes()).await?;
    if let Some(body) = body {
        sock.write_all(body).await?;
    }
    sock.shutdown().await
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
        let head = read_request_head(&mut server).await.unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path(), head.query()), ("POST", "/upload", "w=1"));
        assert_eq!((head.header("content-length"), head.rest.as_slice()), (Some("4"), &b"body"[..]));
        write_reply(&mut server, "200 OK", "image/png", b"png", false).await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("Content-Length: 3\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\npng"), "{got}");
    }

    #[tokio::test]
    async fn an_endless_head_is_given_up() {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        client.write_all(&vec![b'a'; MAX_HEAD + 10]).await.unwrap();
        assert_eq!(read_request_head(&mut server).await.unwrap(), None);
    }
}
