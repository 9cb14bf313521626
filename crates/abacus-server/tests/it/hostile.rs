//! Hostile input on every socket of a real server (issue #6): proptest throws arbitrary
//! bytes, bodies, content types, headers and datagrams at the HTTP API, OTLP/HTTP, OTLP/gRPC
//! and StatsD while a well-behaved client sends known samples. Every HTTP reply must be a
//! 2xx or a 4xx with a JSON `error` (never a 5xx), gRPC must answer with a status and never
//! hang, every StatsD line the parser refuses must be counted under its reason, the server
//! must stay up, and the good client's totals must read back exactly through the query API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use abacus_server::ingest::statsd::parser::{RejectReason, StatsdConfig, parse_packet};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Running, poll, start, test_config};

/// Cases per run: each case hits every socket once (about 7 requests), so a run is a few
/// hundred hostile requests; bounded to stay well under a minute in a debug build.
const CASES: u32 = 600;
/// Rounds of the well-behaved client (one sample per protocol per round).
const GOOD_ROUNDS: u64 = 150;

pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

// ---------- a raw-bytes gRPC codec: sends arbitrary bytes as the Export request ----------

/// Sends `Bytes` as the message and decodes the reply as raw bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

#[derive(Debug)]
pub struct RawEncoder;

#[derive(Debug)]
pub struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls Export with `body` as the raw message; `token` goes to `authorization`.
pub async fn grpc_raw(
    channel: tonic::transport::Channel,
    body: Bytes,
    gzip: bool,
    token: Option<&str>,
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    grpc.unary(
        req,
        tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

// ---------- strategies ----------

#[derive(Clone, Debug)]
struct HttpCase {
    method: &'static str,
    path: String,
    content_type: Option<String>,
    header: Option<(String, String)>,
    body: Vec<u8>,
}

#[derive(Clone, Debug)]
enum Encoding {
    None,
    /// The body gzip-compressed, labelled gzip.
    Gzip,
    /// The raw body labelled gzip (not a gzip stream, mostly).
    GzipLabelOnly,
    Other(String),
}

#[derive(Clone, Debug)]
struct OtlpCase {
    content_type: Option<String>,
    encoding: Encoding,
    body: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Case {
    http: HttpCase,
    otlp: OtlpCase,
    grpc_body: Vec<u8>,
    grpc_gzip: bool,
    /// 0 = HTTP API, 1 = OTLP/HTTP, 2 = OTLP/gRPC.
    tcp_port: usize,
    tcp_bytes: Vec<u8>,
    datagram: Vec<u8>,
}

fn raw(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Header-safe text (visible ASCII and spaces).
fn header_text() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Token soup that often is JSON-shaped.
        r#"[\[\]{}":,a-z0-9_.\-\\ \n]{0,300}"#.prop_map(String::into_bytes),
        // Objects with plausible and implausible fields and values.
        (
            "[a-z_:.]{0,12}",
            prop_oneof![
                Just("1".to_owned()),
                Just("-1".to_owned()),
                Just("1e400".to_owned()),
                Just("null".to_owned()),
                Just("\"x\"".to_owned()),
                "-?[0-9]{1,20}(\\.[0-9]{1,5})?",
            ],
            prop_oneof![
                Just("counter"),
                Just("gauge"),
                Just("histogram"),
                Just("weird")
            ],
            "[a-z_]{0,6}",
            "[ -~]{0,20}",
        )
            .prop_map(|(name, value, ty, lk, lv)| {
                let lv = serde_json::to_string(&lv).unwrap();
                format!(
                    r#"{{"name":"{name}","value":{value},"type":"{ty}","labels":{{"{lk}":{lv}}}}}"#
                )
                .into_bytes()
            }),
        ("[ -~]{0,20}", "-?[0-9]{1,8}").prop_map(|(svc, ms)| {
            let svc = serde_json::to_string(&svc).unwrap();
            format!(r#"{{"service":{svc},"latency_ms":{ms}}}"#).into_bytes()
        }),
    ]
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("OPTIONS")
    ];
    // Percent-escapes may decode to invalid UTF-8; `+`, `=`, `&` make odd queries.
    let segment = "([a-zA-Z0-9_.~:-]|%[0-9A-Fa-f]{2}|%){0,24}";
    let query = "([a-zA-Z0-9_.=&+-]|%[0-9A-Fa-f]{2}|%){0,40}";
    let path = prop_oneof![
        Just("/metrics".to_owned()),
        Just("/latency".to_owned()),
        Just("/services".to_owned()),
        Just("/healthz".to_owned()),
        Just("/readyz".to_owned()),
        (segment, query).prop_map(|(n, q)| format!("/metrics/{n}?{q}")),
        "/metrics/latency\\?(from|to|service)=[ -~&&[^#]]{0,10}"
            .prop_map(|p| p.replace(' ', "%20")),
        segment.prop_map(|s| format!("/{s}")),
    ];
    let content_type = proptest::option::of(prop_oneof![
        Just("application/json".to_owned()),
        Just("application/x-ndjson".to_owned()),
        Just("text/plain".to_owned()),
        Just("application/json; charset=utf-8".to_owned()),
        Just("application/x-protobuf".to_owned()),
        header_text(),
    ]);
    let header = proptest::option::of(prop_oneof![
        (Just("accept".to_owned()), header_text()),
        (
            Just("accept".to_owned()),
            Just("application/openmetrics-text".to_owned())
        ),
        (Just("content-encoding".to_owned()), header_text()),
        (Just("authorization".to_owned()), header_text()),
        ("x-[a-z]{1,10}", header_text()),
    ]);
    let body = prop_oneof![raw(2048), json_ish()];
    (method, path, content_type, header, body).prop_map(
        |(method, path, content_type, header, body)| HttpCase {
            method,
            path,
            content_type,
            header,
            body,
        },
    )
}

fn any_value_strategy() -> impl Strategy<Value = Option<AnyValue>> {
    proptest::option::of(
        prop_oneof![
            any::<String>().prop_map(any_value::Value::StringValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<f64>().prop_map(any_value::Value::DoubleValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            raw(8).prop_map(any_value::Value::BytesValue),
        ]
        .prop_map(|v| AnyValue { value: Some(v) }),
    )
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(
        (
            prop_oneof![any::<String>(), "[a-z_.]{0,8}", Just("le".to_owned())],
            any_value_strategy(),
        )
            .prop_map(|(key, value)| KeyValue {
                key,
                value,
                ..Default::default()
            }),
        0..4,
    )
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -1e6f64..1e6,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0)
    ]
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        attributes(),
        float(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(|(attributes, v, start, time, flags)| NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(v)),
            flags: flags & 1,
            ..Default::default()
        })
}

/// A structurally valid export request with arbitrary names, attributes and values (so the
/// conversion, not only the decoder, gets hostile input).
fn otlp_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let arbitrary_hist = (
        attributes(),
        proptest::collection::vec(float(), 0..5),
        proptest::collection::vec(0u64..1000, 0..6),
        any::<u64>(),
        proptest::option::of(float()),
    )
        .prop_map(
            |(attributes, bounds, counts, count, sum)| HistogramDataPoint {
                attributes,
                explicit_bounds: bounds,
                bucket_counts: counts,
                count,
                sum,
                time_unix_nano: 1,
                ..Default::default()
            },
        );
    // Consistent points (increasing bounds, one count more than bounds, count = their sum),
    // so that hostile attributes reach the registry and the exposition.
    let consistent_hist = (attributes(), proptest::collection::vec(0u64..50, 1..5)).prop_map(
        |(attributes, counts)| HistogramDataPoint {
            attributes,
            explicit_bounds: (1..counts.len()).map(|i| (i * 10) as f64).collect(),
            count: counts.iter().sum(),
            sum: Some(counts.iter().sum::<u64>() as f64),
            bucket_counts: counts,
            time_unix_nano: 1,
            ..Default::default()
        },
    );
    let hist = prop_oneof![arbitrary_hist, consistent_hist];
    let temporality = prop_oneof![Just(0), Just(1), Just(1), Just(2), any::<i32>()];
    let data = prop_oneof![
        proptest::collection::vec(number_point(), 0..3)
            .prop_map(|data_points| metric::Data::Gauge(Gauge { data_points })),
        (
            proptest::collection::vec(number_point(), 0..3),
            temporality.clone(),
            any::<bool>()
        )
            .prop_map(|(data_points, t, mono)| metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: t,
                is_monotonic: mono,
            })),
        (proptest::collection::vec(hist, 0..3), temporality).prop_map(|(data_points, t)| {
            metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: t,
            })
        }),
    ];
    let metric = (
        prop_oneof![any::<String>(), "[a-z.]{0,12}", "[a-z]{250,260}"],
        proptest::option::of(data),
    )
        .prop_map(|(name, data)| Metric {
            name,
            data,
            ..Default::default()
        });
    (
        proptest::collection::vec(metric, 0..4),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(metrics, service)| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: service
                        .map(|s| {
                            vec![KeyValue {
                                key: "service.name".into(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue(s)),
                                }),
                                ..Default::default()
                            }]
                        })
                        .unwrap_or_default(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
}

fn otlp_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        raw(2048),
        otlp_request().prop_map(|r| r.encode_to_vec()),
        otlp_request().prop_map(|r| serde_json::to_vec(&r).unwrap()),
        json_ish(),
    ]
}

fn otlp_case() -> impl Strategy<Value = OtlpCase> {
    let content_type = proptest::option::of(prop_oneof![
        Just("application/x-protobuf".to_owned()),
        Just("application/protobuf".to_owned()),
        Just("application/json".to_owned()),
        header_text(),
    ]);
    let encoding = prop_oneof![
        Just(Encoding::None),
        Just(Encoding::Gzip),
        Just(Encoding::GzipLabelOnly),
        header_text().prop_map(Encoding::Other),
    ];
    (content_type, encoding, otlp_body()).prop_map(|(content_type, encoding, body)| OtlpCase {
        content_type,
        encoding,
        body,
    })
}

/// StatsD-shaped lines with random parts, and plain garbage.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        raw(120),
        (
            "[a-zA-Z0-9_.:é -]{0,12}",
            "[-+]?[0-9.eE:a-z]{0,8}",
            prop_oneof![
                Just("c"),
                Just("g"),
                Just("ms"),
                Just("h"),
                Just("d"),
                Just("s"),
                Just("x"),
                Just("")
            ],
            "(\\|@[0-9.-]{0,4})?",
            "(\\|#[a-z_:,é]{0,20})?",
        )
            .prop_map(|(n, v, t, r, g)| format!("{n}:{v}|{t}{r}{g}").into_bytes()),
        Just(b"_e{1,1}:a|b".to_vec()),
        Just(b"x:1|c|#__reserved:1".to_vec()),
        Just(vec![b'a'; 9000]),
    ];
    proptest::collection::vec(line, 0..6).prop_map(|lines| lines.join(&b'\n'))
}

fn case() -> impl Strategy<Value = Case> {
    (
        http_case(),
        otlp_case(),
        otlp_body(),
        any::<bool>(),
        0usize..3,
        prop_oneof![
            raw(512),
            // Request-line-shaped garbage.
            ("[A-Z]{0,7}", "[ -~]{0,30}", "[ -~\r\n]{0,200}", raw(64)).prop_map(|(m, p, h, b)| {
                let mut v = format!("{m} {p} HTTP/1.1\r\n{h}\r\n\r\n").into_bytes();
                v.extend(b);
                v
            }),
            // An HTTP/2 preface followed by garbage frames.
            raw(200).prop_map(|b| {
                let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                v.extend(b);
                v
            }),
        ],
        datagram(),
    )
        .prop_map(
            |(http, otlp, grpc_body, grpc_gzip, tcp_port, tcp_bytes, datagram)| Case {
                http,
                otlp,
                grpc_body,
                grpc_gzip,
                tcp_port,
                tcp_bytes,
                datagram,
            },
        )
}

// ---------- checks ----------

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A reply is a success, or a 4xx whose body is JSON with a string `error`.
fn check_reply(what: &str, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        status < 500,
        "{what}: status {status}: {}",
        String::from_utf8_lossy(body)
    );
    if status >= 400 {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            TestCaseError::fail(format!(
                "{what}: {status} body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            ))
        })?;
        prop_assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {status} without an error message: {v}"
        );
    }
    Ok(())
}

struct Ctx {
    http: SocketAddr,
    otlp_http: SocketAddr,
    otlp_grpc: SocketAddr,
    statsd: SocketAddr,
    client: reqwest::Client,
    channel: tonic::transport::Channel,
    udp: tokio::net::UdpSocket,
}

/// Parser rejects the hostile datagrams must produce, by reason.
type Expected = BTreeMap<&'static str, u64>;

async fn throw(ctx: &Ctx, c: &Case, expected: &mut Expected) -> Result<(), TestCaseError> {
    // HTTP API.
    let h = &c.http;
    let mut req = ctx
        .client
        .request(
            h.method.parse().unwrap(),
            format!("http://{}{}", ctx.http, h.path),
        )
        .body(h.body.clone());
    if let Some(ct) = &h.content_type {
        req = req.header("content-type", ct.as_str());
    }
    if let Some((k, v)) = &h.header {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("HTTP API: {e}")))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    check_reply(&format!("{} {}", h.method, h.path), status, &body)?;

    // OTLP/HTTP.
    let o = &c.otlp;
    let mut req = ctx
        .client
        .post(format!("http://{}/v1/metrics", ctx.otlp_http));
    if let Some(ct) = &o.content_type {
        req = req.header("content-type", ct.as_str());
    }
    let body = match &o.encoding {
        Encoding::None => o.body.clone(),
        Encoding::Gzip => {
            req = req.header("content-encoding", "gzip");
            gzip(&o.body)
        }
        Encoding::GzipLabelOnly => {
            req = req.header("content-encoding", "gzip");
            o.body.clone()
        }
        Encoding::Other(e) => {
            req = req.header("content-encoding", e.as_str());
            o.body.clone()
        }
    };
    let r = req
        .body(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("OTLP/HTTP: {e}")))?;
    let status = r.status().as_u16();
    let json_reply = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = r.bytes().await.unwrap_or_default();
    check_reply("OTLP/HTTP", status, &body)?;
    if status == 200 {
        if json_reply {
            prop_assert!(serde_json::from_slice::<Value>(&body).is_ok());
        } else {
            prop_assert!(
                ExportMetricsServiceResponse::decode(body.as_ref()).is_ok(),
                "OTLP/HTTP 200 body is an ExportMetricsServiceResponse"
            );
        }
    }

    // OTLP/gRPC: arbitrary bytes as the Export message.
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        grpc_raw(
            ctx.channel.clone(),
            Bytes::from(c.grpc_body.clone()),
            c.grpc_gzip,
            None,
        ),
    )
    .await
    .map_err(|_| TestCaseError::fail("gRPC call hung"))?;
    match reply {
        Ok(body) => prop_assert!(ExportMetricsServiceResponse::decode(body).is_ok()),
        // gRPC's code for a request message that cannot be parsed.
        Err(s) if s.code() == tonic::Code::Internal => prop_assert!(
            s.message().contains("decode"),
            "gRPC INTERNAL only for undecodable messages: {s:?}"
        ),
        Err(s) => prop_assert!(false, "unexpected gRPC status {s:?}"),
    }

    // Raw TCP garbage to one of the TCP listeners.
    let addr = [ctx.http, ctx.otlp_http, ctx.otlp_grpc][c.tcp_port];
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| TestCaseError::fail(format!("connect {addr}: {e}")))?;
    // The server may close the connection before reading everything: write errors are fine.
    let _ = s.write_all(&c.tcp_bytes).await;
    let _ = s.shutdown().await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    prop_assert!(read.is_ok(), "raw TCP to {addr}: no close within 10 s");
    prop_assert!(
        !reply.starts_with(b"HTTP/1.1 5") && !reply.starts_with(b"HTTP/1.0 5"),
        "raw TCP to {addr}: {}",
        String::from_utf8_lossy(&reply)
    );

    // StatsD: what the parser refuses must be counted, reason by reason.
    let outcome = parse_packet(&c.datagram, &StatsdConfig::default());
    for r in &outcome.rejects {
        *expected.entry(r.reason.as_str()).or_default() += 1;
    }
    ctx.udp
        .send_to(&c.datagram, ctx.statsd)
        .await
        .map_err(|e| TestCaseError::fail(format!("udp send: {e}")))?;

    // Still up.
    let r = ctx
        .client
        .get(format!("http://{}/healthz", ctx.http))
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("healthz: {e}")))?;
    prop_assert_eq!(r.status().as_u16(), 200);
    Ok(())
}

/// The label names of one sample line `name{a="x",b="y"} value`, honouring `\\`, `\"` and
/// `\n` escapes in values; `None` if the line is not of that shape.
fn label_names(line: &str) -> Option<Vec<String>> {
    let Some(open) = line.find('{') else {
        return Some(Vec::new());
    };
    let mut names = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return after.starts_with(' ').then_some(names);
        }
        let eq = rest.find("=\"")?;
        names.push(rest[..eq].to_owned());
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => {
                    chars.next()?;
                }
                (i, '"') => break eq + 2 + i + 1,
                (_, '\n') => return None,
                _ => {}
            }
        };
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

// ---------- the well-behaved client ----------

fn good_otlp_request(round: u64) -> ExportMetricsServiceRequest {
    let point = NumberDataPoint {
        attributes: vec![KeyValue {
            key: "client".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("good".into())),
            }),
            ..Default::default()
        }],
        start_time_unix_nano: round,
        time_unix_nano: round + 1,
        value: Some(number_data_point::Value::AsInt(2)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "goodclient.otlp".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends known samples on every protocol; returns how many rounds it completed.
async fn good_client(srv: (SocketAddr, SocketAddr, SocketAddr, SocketAddr)) -> u64 {
    let (http, otlp_http, otlp_grpc, statsd) = srv;
    let client = reqwest::Client::new();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut grpc = MetricsServiceClient::connect(format!("http://{otlp_grpc}"))
        .await
        .unwrap();
    for round in 0..GOOD_ROUNDS {
        let r = client
            .post(format!("http://{http}/metrics"))
            .header("content-type", "application/json")
            .body(r#"{"name":"goodclient_json","value":1,"type":"counter","labels":{"client":"good"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "good JSON sample refused");
        let r = client
            .post(format!("http://{http}/latency"))
            .body(format!(
                r#"{{"service":"goodclient","latency_ms":{}}}"#,
                round % 10
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "good latency sample refused");
        udp.send_to(b"goodclient.statsd:3|c|#client:good", statsd)
            .await
            .unwrap();
        let r = client
            .post(format!("http://{otlp_http}/v1/metrics"))
            .header("content-type", "application/x-protobuf")
            .body(good_otlp_request(round).encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "good OTLP/HTTP export refused");
        let resp = grpc
            .export(good_otlp_request(round))
            .await
            .expect("good gRPC export")
            .into_inner();
        assert!(resp.partial_success.is_none(), "{resp:?}");
        tokio::task::yield_now().await;
    }
    GOOD_ROUNDS
}

async fn query_sum(client: &reqwest::Client, srv: &Running, path: &str) -> (u64, f64) {
    let rows: Value = client
        .get(srv.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows.as_array().expect("rows");
    rows.iter().fold((0, 0.0), |(c, s), r| {
        (
            c + r["count"].as_u64().unwrap_or(0),
            s + r["sum"].as_f64().unwrap_or(0.0),
        )
    })
}

fn statsd_rejects(srv: &Running) -> Expected {
    let snap = srv.state.registry().snapshot();
    let mut out = Expected::new();
    for reason in RejectReason::ALL {
        let n = snap
            .counter(
                "abacus_ingest_rejects",
                &[("protocol", "statsd"), ("reason", reason.as_str())],
            )
            .unwrap_or(0);
        if n > 0 {
            out.insert(reason.as_str(), n);
        }
    }
    out
}

#[test]
fn hostile_bytes_on_every_socket_never_5xx_and_good_totals_are_exact() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let srv = rt.block_on(start(test_config()));
    let ctx = rt.block_on(async {
        Ctx {
            http: srv.http,
            otlp_http: srv.otlp_http,
            otlp_grpc: srv.otlp_grpc,
            statsd: srv.statsd,
            client: reqwest::Client::new(),
            channel: tonic::transport::Endpoint::from_shared(format!("http://{}", srv.otlp_grpc))
                .unwrap()
                .connect()
                .await
                .unwrap(),
            udp: tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    });
    let good = rt.spawn(good_client((
        srv.http,
        srv.otlp_http,
        srv.otlp_grpc,
        srv.statsd,
    )));

    let expected = std::cell::RefCell::new(Expected::new());
    let datagrams = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |c| {
        datagrams.set(datagrams.get() + 1);
        rt.block_on(throw(&ctx, &c, &mut expected.borrow_mut()))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let rounds = rt.block_on(good).expect("good client");
    let expected = expected.into_inner();
    assert!(
        expected.values().sum::<u64>() >= u64::from(CASES),
        "the strategy produces bad lines: {expected:?}"
    );

    rt.block_on(async {
        // Every datagram (hostile and good) was received: then the reject counts are final.
        let state = srv.state.clone();
        let want = datagrams.get() + rounds;
        poll("all StatsD datagrams received", || {
            let n = state
                .registry()
                .snapshot()
                .counter("abacus_ingest_requests", &[("protocol", "statsd")])
                .unwrap_or(0);
            async move { (n >= want).then_some(()) }
        })
        .await;
        assert_eq!(
            statsd_rejects(&srv),
            expected,
            "StatsD rejects counted per reason == bad lines sent"
        );

        srv.close_window().await;
        let client = reqwest::Client::new();
        let n = rounds as f64;
        assert_eq!(
            query_sum(&client, &srv, "/metrics/goodclient_json?client=good").await,
            (1, n)
        );
        let (count, sum) = query_sum(&client, &srv, "/metrics/latency?service=goodclient").await;
        let per_ten: u64 = (0..rounds).map(|r| r % 10).sum();
        assert_eq!((count, sum), (rounds, per_ten as f64));
        assert_eq!(
            query_sum(&client, &srv, "/metrics/goodclient_statsd?client=good").await,
            (1, 3.0 * n)
        );
        // OTLP/HTTP and OTLP/gRPC both feed `goodclient_otlp`: 2 per export, 2 exports a round.
        assert_eq!(
            query_sum(&client, &srv, "/metrics/goodclient_otlp?client=good").await,
            (1, 4.0 * n)
        );
        let r = client.get(srv.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);

        // Whatever was accepted, the expositions stay valid: every line parses (prometheus-parse)
        // and no sample carries a label name twice (a duplicate `le` did, before it was
        // refused on histograms). openmetrics-parser is stricter than the formats (it wants
        // one label-name set per family), so it is used on uniform families in names.rs only.
        for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
            let text = client
                .get(srv.url("/metrics"))
                .header("accept", accept)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let lines = text.lines().map(|l| Ok(l.to_owned()));
            if let Err(e) = prometheus_parse::Scrape::parse(lines) {
                panic!("{accept} exposition after hostile input does not parse: {e}\n{text}");
            }
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let names = label_names(line)
                    .unwrap_or_else(|| panic!("{accept}: cannot split labels of {line:?}"));
                let mut sorted = names.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(
                    sorted.len(),
                    names.len(),
                    "{accept}: repeated label in {line:?}"
                );
            }
        }
    });
    rt.block_on(srv.stop()).unwrap();
}
