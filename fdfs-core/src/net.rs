//! What this host is on the network, and one blocking request/answer exchange for code that
//! runs outside any async runtime (the nginx module reading tracker parameters while nginx
//! loads its configuration). No tokio here: this module is part of the pure core.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::ServerAddr;
use crate::protocol::{Command, Header, Status, HEADER_LEN, RESP_CMD};

/// This host's interface addresses (what the original reads with `if_alias_prefix`).
pub fn interface_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Answers larger than this are refused (parameter and ID-table answers are a few KiB).
const MAX_ANSWER: u64 = 1 << 20;

/// Why [`call_blocking`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A server answered with this status (final: the others are not asked).
    #[error("{addr}: status {}", status.0)]
    Refused { addr: String, status: Status },
    /// No server could be reached; the last one's error.
    #[error("{0}")]
    Unreachable(String),
}

/// One request to the first of `servers` that answers; a status other than 0 is final.
pub fn call_blocking(
    servers: &[ServerAddr],
    cmd: Command,
    body: &[u8],
    connect_timeout: Duration,
    network_timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let mut last = String::from("no server configured");
    for s in servers {
        for host in &s.hosts {
            let addr = crate::config::join_host_port(host, s.port);
            match call_one(&addr, cmd, body, connect_timeout, network_timeout) {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(status)) => return Err(CallError::Refused { addr, status }),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
    }
    Err(CallError::Unreachable(last))
}

fn call_one(
    addr: &str,
    cmd: Command,
    body: &[u8],
    connect_timeout: Duration,
    network_timeout: Duration,
) -> std::io::Result<Result<Vec<u8>, Status>> {
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let mut s = TcpStream::connect_timeout(&target, connect_timeout.max(Duration::from_millis(1)))?;
    s.set_read_timeout(Some(network_timeout.max(Duration::from_millis(1))))?;
    s.set_write_timeout(Some(network_timeout.max(Duration::from_millis(1))))?;
    let _ = s.set_nodelay(true);
    let mut req = Header::request(cmd, body.len()).encode().to_vec();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut raw = [0u8; HEADER_LEN];
    s.read_exact(&mut raw)?;
    let h = Header::decode(&raw, MAX_ANSWER).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if h.cmd != RESP_CMD {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an answer"));
    }
    let mut answer = vec![0u8; h.pkg_len as usize];
    s.read_exact(&mut answer)?;
    let _ = s.write_all(&Header::request(Command::Quit, 0).encode());
    Ok(if h.status == 0 { Ok(answer) } else { Err(Status(h.status)) })
}
