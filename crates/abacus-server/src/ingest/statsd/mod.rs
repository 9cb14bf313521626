//! StatsD / DogStatsD ingest (datagram payloads → [`Sample`](super::Sample)s).

pub mod parser;

pub use parser::{
    LineReject, MIN_SAMPLE_RATE, MetricType, PacketOutcome, RejectCounts, RejectReason,
    StatsdConfig, StatsdLine, StatsdValue, parse_line, parse_packet, parse_packet_into,
};
