//! StatsD / DogStatsD over UDP.
//!
//! The socket is created with `socket2` so its receive buffer can be raised before binding
//! (`SO_RCVBUF`, default 4 MiB; Linux caps the request at `net.core.rmem_max` and reports
//! double the granted size). One task receives datagrams, parses them with
//! [`parse_packet_into`] and applies the samples; rejected lines are counted per reason in
//! `abacus_ingest_rejects{protocol="statsd",reason=...}`. On shutdown the datagrams
//! already queued in the socket are drained before the task ends.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::app::AppState;
use crate::ingest::statsd::parser::{RejectCounts, StatsdConfig, parse_packet_into};
use crate::telemetry::Protocol;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

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
    socket.bind(&addr.into())?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    Ok((socket.into(), granted))
}

struct Receiver {
    state: AppState,
    config: StatsdConfig,
    samples: Vec<crate::ingest::Sample>,
    rejects: RejectCounts,
}

impl Receiver {
    fn packet(&mut self, data: &[u8]) {
        let t = self.state.telemetry();
        t.request(Protocol::Statsd);
        self.samples.clear();
        self.rejects = RejectCounts::default();
        parse_packet_into(data, &self.config, &mut self.samples, &mut self.rejects);
        self.state.apply(Protocol::Statsd, &self.samples);
        for (reason, n) in self.rejects.iter() {
            t.rejects(Protocol::Statsd, reason.as_str(), n);
        }
    }
}

/// Receives until `shutdown` turns true, then drains what is queued and returns.
pub(crate) async fn run(socket: UdpSocket, state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut rx = Receiver {
        state,
        config: StatsdConfig::default(),
        samples: Vec::new(),
        rejects: RejectCounts::default(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => rx.packet(&buf[..n]),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_grants_a_receive_buffer() {
        let (sock, granted) = bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(sock.local_addr().unwrap().port() != 0);
        assert!(granted > 0);
    }
}
