//! Forwarding to the upstream resolvers: a fresh random-port UDP socket and a random ID per query (so an
//! off-path spoofer must guess both), answers checked against the question, TCP when the answer is
//! truncated, the next resolver on timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::EDNS_PAYLOAD;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream resolver is configured")]
    NoneConfigured,
    #[error("no upstream answered: {0}")]
    Failed(String),
}

/// The upstream resolvers.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
}

/// The `nameserver` lines of a resolv.conf, port 53. Loopback stub resolvers (systemd-resolved's
/// 127.0.0.53) are kept: on a node they are the way out.
#[must_use]
pub fn from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|a| a.split('%').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// A resolver address that is neither `IP` nor `IP:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected an IP address or IP:PORT")]
pub struct BadServer(pub String);

/// A resolver address as given on the command line: `IP` or `IP:PORT` (`[IPv6]:PORT`).
///
/// # Errors
/// The text is neither.
pub fn parse_server(text: &str) -> Result<SocketAddr, BadServer> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| BadServer(text.to_owned()))
}

fn request_for(query: &Query) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(query.clone());
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(e);
    m
}

fn answers(request: &Message, response: &Message) -> bool {
    response.metadata.id == request.metadata.id
        && response.metadata.message_type == hickory_proto::op::MessageType::Response
        && response.queries.len() == 1
        && request.queries.first().is_some_and(|q| {
            let r = &response.queries[0];
            r.query_type() == q.query_type()
                && r.query_class() == q.query_class()
                && r.name() == q.name()
        })
}

async fn over_udp(server: SocketAddr, request: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let local = if server.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not the answer to this question (a stray or spoofed packet) is ignored.
        if let Ok(m) = Message::from_vec(&buf[..n])
            && answers(request, &m)
        {
            return Ok(m);
        }
    }
}

async fn over_tcp(server: SocketAddr, request: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let mut s = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    s.write_all(&out).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    if answers(request, &m) {
        Ok(m)
    } else {
        Err(std::io::Error::other(
            "the answer does not match the question",
        ))
    }
}

impl Upstreams {
    /// Resolves `query` upstream. Returns the response, the resolver that gave it and how long it took.
    ///
    /// # Errors
    /// Every resolver failed or timed out.
    pub async fn resolve(
        &self,
        query: &Query,
    ) -> Result<(Message, SocketAddr, Duration), UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoneConfigured);
        }
        let request = request_for(query);
        let bytes = request
            .to_vec()
            .map_err(|e| UpstreamError::Failed(e.to_string()))?;
        let mut errors = Vec::new();
        for &server in &self.servers {
            let started = Instant::now();
            let attempt = async {
                let m = over_udp(server, &request, &bytes).await?;
                if m.metadata.truncation {
                    over_tcp(server, &request, &bytes).await
                } else {
                    Ok(m)
                }
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(m)) => return Ok((m, server, started.elapsed())),
                Ok(Err(e)) => errors.push(format!("{server}: {e}")),
                Err(_) => errors.push(format!("{server}: timed out")),
            }
        }
        Err(UpstreamError::Failed(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n";
        let got = from_resolv_conf(text);
        assert_eq!(
            got,
            [
                "10.0.0.2:53"
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|_| unreachable!()),
                "[fe80::1]:53".parse().unwrap_or_else(|_| unreachable!()),
            ]
        );
    }

    #[test]
    fn server_addresses() {
        assert_eq!(parse_server("1.1.1.1").map(|a| a.port()), Ok(53));
        assert_eq!(parse_server("127.0.0.1:5353").map(|a| a.port()), Ok(5353));
        assert_eq!(parse_server("[::1]:54").map(|a| a.port()), Ok(54));
        assert_eq!(parse_server("resolver"), Err(BadServer("resolver".into())));
        assert!(
            parse_server("resolver")
                .unwrap_err()
                .to_string()
                .contains("resolver")
        );
    }
}
