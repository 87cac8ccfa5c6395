//! The daemons' small HTTP side (metrics, and the storage's thumbnail maker): one request per
//! connection, its head at most [`MAX_HEAD`] bytes, no body, the answer whole with
//! `Connection: close`. What is served here is read by Prometheus or by nginx's proxy on the
//! same host, so nothing more of HTTP is spoken.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head read.
pub const MAX_HEAD: usize = 8192;

/// A request's method and target (path and query), `None` when the peer closed or sent a head
/// longer than [`MAX_HEAD`] or not ended by an empty line.
pub async fn read_request_line<S: AsyncRead + Unpin>(sock: &mut S) -> std::io::Result<Option<(String, String)>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let end = head.iter().position(|&b| b == b'\r').unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut parts = line.split(' ');
    Ok(Some((parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned())))
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
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    if !head_only {
        sock.write_all(body).await?;
    }
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_line_is_read_and_an_answer_written_whole() {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        client.write_all(b"GET /thumbnail/group1/x?w=1 HTTP/1.0\r\nHost: a\r\n\r\n").await.unwrap();
        let line = read_request_line(&mut server).await.unwrap();
        assert_eq!(line, Some(("GET".to_owned(), "/thumbnail/group1/x?w=1".to_owned())));
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
        assert_eq!(read_request_line(&mut server).await.unwrap(), None);
    }
}
