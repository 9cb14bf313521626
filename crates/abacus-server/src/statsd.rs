//! StatsD / DogStatsD over UDP.
//!
//! The socket is created with `socket2` so its receive buffer can be raised before binding
//! (`SO_RCVBUF`, default 4 MiB; Linux caps the request at `net.core.rmem_max` and reports
//! double the granted size). One receiver per core (at most [`MAX_RECEIVERS`]) each owns a
//! socket bound to the same address with `SO_REUSEPORT`: the kernel spreads senders over
//! the sockets by their address (a hash of the 4-tuple), so the datagrams of one client
//! always reach the same receiver and are applied in the order they arrived (a gauge set
//! followed by a `+delta` from the same client cannot swap), while many clients are parsed
//! on several cores. Each receiver parses datagrams and applies each line as it is parsed
//! ([`AppState::apply_statsd`]: names and tags are borrowed from the datagram unless they
//! need sanitising); rejected lines are counted per reason in
//! `abacus_ingest_rejects{protocol="statsd",reason=...}`. On shutdown the datagrams
//! already queued in every socket are drained before the tasks end.
//!
//! StatsD over TCP (off by default, `listen.statsd_tcp`) takes newline-delimited lines on
//! long-lived connections, at most `limits.max_connections` at a time (more are closed at
//! once and counted as `reason="too_many_connections"`). Complete lines are parsed in
//! chunks as they arrive; a line longer than the parser's limit is skipped up to its
//! newline and counted once as `line_too_long`; the last line needs no newline before the
//! connection closes. Rejects are counted under `protocol="statsd_tcp"`.
//!
//! Because the sockets share the port with `SO_REUSEPORT`, a second process of the same
//! user could bind the same UDP port and take a share of the traffic; the HTTP port (not
//! shared) makes a second `abacus serve` with the same defaults fail at start-up.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::ingest::statsd::parser::{RejectCounts, SinkScratch, StatsdConfig};
use crate::telemetry::Protocol;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// At most this many receiver sockets (and tasks), whatever the core count.
pub const MAX_RECEIVERS: usize = 4;

/// Datagrams a receiver takes from its socket before giving other tasks a turn.
const BURST: usize = 64;

/// Binds a UDP socket with the requested receive buffer; returns it non-blocking, and the
/// receive buffer size the kernel granted.
///
/// # Errors
/// Socket creation or bind failures.
pub fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<(std::net::UdpSocket, usize)> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    if recv_buffer > 0 {
        if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
            tracing::warn!(error = %e, requested = recv_buffer, "could not set the StatsD receive buffer");
        }
    }
    socket.set_nonblocking(true)?;
    // Lets the extra receivers of `run` bind the same address (see the module docs).
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    Ok((socket.into(), granted))
}

struct Receiver {
    state: AppState,
    protocol: Protocol,
    config: StatsdConfig,
    scratch: SinkScratch,
    rejects: RejectCounts,
}

impl Receiver {
    fn new(state: AppState, protocol: Protocol) -> Receiver {
        Receiver {
            state,
            protocol,
            config: StatsdConfig::default(),
            scratch: SinkScratch::default(),
            rejects: RejectCounts::default(),
        }
    }

    /// Parses and applies one datagram (UDP) or one chunk of complete lines (TCP).
    fn packet(&mut self, data: &[u8]) {
        let t = self.state.telemetry();
        t.request(self.protocol);
        self.rejects = RejectCounts::default();
        self.state.apply_statsd(
            self.protocol,
            data,
            &self.config,
            &mut self.scratch,
            &mut self.rejects,
        );
        for (reason, n) in self.rejects.iter() {
            t.rejects(self.protocol, reason.as_str(), n);
        }
    }
}

/// Splits a TCP byte stream into chunks of complete lines.
#[derive(Debug)]
pub(crate) struct LineBuffer {
    /// The unfinished last line of what was fed so far.
    partial: Vec<u8>,
    /// Skipping the rest of a line that grew past `max_line`.
    skipping: bool,
    max_line: usize,
}

impl LineBuffer {
    pub(crate) fn new(max_line: usize) -> LineBuffer {
        LineBuffer {
            partial: Vec::new(),
            skipping: false,
            max_line,
        }
    }

    /// Appends `data`; hands every run of complete lines to `lines` (one call per feed at
    /// most). Returns how many over-long lines were dropped.
    pub(crate) fn feed(&mut self, mut data: &[u8], mut lines: impl FnMut(&[u8])) -> u64 {
        if self.skipping {
            match data.iter().position(|b| *b == b'\n') {
                None => return 0,
                Some(i) => {
                    self.skipping = false;
                    data = &data[i + 1..];
                }
            }
        }
        let tail = match data.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                if self.partial.is_empty() {
                    lines(&data[..=last]);
                } else {
                    // The first line began in an earlier read; the parser refuses it if
                    // the two parts together are too long.
                    self.partial.extend_from_slice(&data[..=last]);
                    lines(&self.partial);
                    self.partial.clear();
                }
                &data[last + 1..]
            }
            None => data,
        };
        self.partial.extend_from_slice(tail);
        if self.partial.len() > self.max_line {
            self.partial.clear();
            self.skipping = true;
            return 1;
        }
        0
    }

    /// The connection ended: hands over the last line if it had no newline.
    pub(crate) fn finish(&mut self, mut lines: impl FnMut(&[u8])) {
        if !self.skipping && !self.partial.is_empty() {
            lines(&self.partial);
        }
        self.partial.clear();
        self.skipping = false;
    }
}

/// Number of receivers: one per core, at most [`MAX_RECEIVERS`].
fn receivers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, MAX_RECEIVERS)
}

/// Binds the other receivers' sockets on `first`'s address (none more if that fails).
///
/// Called at start-up, right after `first` is bound and before its address is known to
/// anyone: the kernel picks a socket of the `SO_REUSEPORT` group by hashing a datagram's
/// addresses over the group *as it is then*, so a socket joining later would move some
/// clients from one receiver to another between two of their datagrams, and a client's
/// datagrams could be applied out of order.
pub(crate) fn bind_more(first: &UdpSocket, buffer: usize) -> Vec<UdpSocket> {
    let mut more = Vec::new();
    if let Ok(addr) = first.local_addr() {
        for _ in 1..receivers() {
            match bind(addr, buffer).and_then(|(s, _)| UdpSocket::from_std(s)) {
                Ok(s) => more.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, "could not bind another StatsD receiver");
                    break;
                }
            }
        }
    }
    more
}

/// Receives on every socket of the group (from [`bind`] and [`bind_more`]) until
/// `shutdown` turns true, then drains what is queued and returns.
pub(crate) async fn run(sockets: Vec<UdpSocket>, state: AppState, shutdown: watch::Receiver<bool>) {
    tracing::debug!(receivers = sockets.len(), "StatsD receivers");
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(receive(Arc::new(socket), state.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

async fn receive(socket: Arc<UdpSocket>, state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut rx = Receiver::new(state, Protocol::Statsd);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => {
                    rx.packet(&buf[..n]);
                    // Take what is already queued without another trip through the
                    // scheduler, up to a burst.
                    for _ in 1..BURST {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, _)) => rx.packet(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "statsd recv failed");
                    tokio::task::yield_now().await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    // Drain what the kernel already queued.
    let mut drained = 0u64;
    while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
        rx.packet(&buf[..n]);
        drained += 1;
    }
    tracing::debug!(drained, "statsd receiver stopped");
}

/// Accepts StatsD TCP connections until `shutdown` turns true; then every connection
/// applies what it has already received and closes.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_connections = state.config().limits.max_connections.max(1);
    let mut conns = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Reap finished connections so the count below is current.
                    while conns.try_join_next().is_some() {}
                    if conns.len() >= max_connections {
                        state.telemetry().rejects(Protocol::StatsdTcp, "too_many_connections", 1);
                        drop(stream);
                        continue;
                    }
                    conns.spawn(connection(stream, state.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "statsd tcp accept failed");
                    tokio::task::yield_now().await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    while conns.join_next().await.is_some() {}
}

async fn connection(mut stream: TcpStream, state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut rx = Receiver::new(state, Protocol::StatsdTcp);
    let mut lines = LineBuffer::new(rx.config.max_line_len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut too_long = 0u64;
    loop {
        let n = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = shutdown.wait_for(|s| *s) => {
                // Take what the kernel already holds, then stop.
                while let Ok(n) = stream.try_read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    too_long += lines.feed(&buf[..n], |chunk| rx.packet(chunk));
                }
                break;
            }
        };
        too_long += lines.feed(&buf[..n], |chunk| rx.packet(chunk));
    }
    lines.finish(|chunk| rx.packet(chunk));
    rx.state
        .telemetry()
        .rejects(Protocol::StatsdTcp, "line_too_long", too_long);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(max: usize, reads: &[&[u8]]) -> (Vec<String>, u64) {
        let mut lb = LineBuffer::new(max);
        let mut out = Vec::new();
        let mut dropped = 0;
        for r in reads {
            dropped += lb.feed(r, |c| out.push(String::from_utf8_lossy(c).into_owned()));
        }
        lb.finish(|c| out.push(String::from_utf8_lossy(c).into_owned()));
        (out, dropped)
    }

    #[test]
    fn line_buffer_joins_lines_split_across_reads() {
        let (out, dropped) = chunks(100, &[b"a:1|c\nb:", b"2|c\nc:3", b"|c"]);
        assert_eq!(out, ["a:1|c\n", "b:2|c\n", "c:3|c"]);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn line_buffer_skips_an_overlong_line_to_its_newline_and_keeps_the_rest() {
        let long = vec![b'x'; 40];
        let (out, dropped) = chunks(16, &[b"ok:1|c\n", &long, &long, b"tail\nnext:2|c\n"]);
        assert_eq!(out, ["ok:1|c\n", "next:2|c\n"]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn line_buffer_passes_many_lines_of_one_read_in_one_chunk() {
        let (out, _) = chunks(16, &[b"a:1|c\nb:2|c\nc:3|c\n"]);
        assert_eq!(out, ["a:1|c\nb:2|c\nc:3|c\n"]);
    }

    #[test]
    fn bind_grants_a_receive_buffer() {
        let (sock, granted) = bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(sock.local_addr().unwrap().port() != 0);
        assert!(granted > 0);
    }
}
