//! The golden bytes of real FastDFS 6.16.1 traffic (`tests/data/captures`, copied from `shared/captures`), for tests that play
//! a C daemon's side of an exchange against ours when the C daemons cannot run here.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub cmd: u8,
    pub status: u8,
    pub body: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The packets of `file` (e.g. `fastdfs-6.16.1-cluster.jsonl`) whose exchange name starts with
/// `prefix`, sent by `from` (`storage`, `tracker`, `tracker-peer`, ...), in order.
pub fn packets(file: &str, prefix: &str, from: &str) -> Vec<Packet> {
    let text = std::fs::read_to_string(crate::test_data_dir().join("captures").join(file)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["exchange"].as_str().unwrap().starts_with(prefix) && r["from"] == from)
        .map(|r| Packet {
            cmd: r["cmd"].as_u64().unwrap() as u8,
            status: r["status"].as_u64().unwrap() as u8,
            body: hex(r["body_hex"].as_str().unwrap()),
        })
        .collect()
}

/// A connection to `to` from the local address `from` (a C peer's address, so the daemon
/// sees who it saw in the capture).
pub fn connect_from(from: &str, to: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.connect(&to.parse::<SocketAddr>().unwrap().into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}
