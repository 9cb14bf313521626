//! Access with a token (issue #6): every route of the HTTP API router, of the OTLP/HTTP
//! router and every method of the OTLP/gRPC service, walked from the tables the routers are
//! built from (`app::ROUTES`, `otlp::http::ROUTES`, `otlp::grpc::METHODS`), so a route added
//! later is walked too.

use abacus_server::app::{Access, Endpoint, ROUTES, Route};
use abacus_server::otlp;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use serde_json::Value;

use crate::common::{Running, poll, start, test_config};
use crate::hostile::grpc_raw;

const TOKEN: &str = "s3cret-token";

/// A request that succeeds on `route` when authorised (exhaustive: a new endpoint needs one).
fn valid_request(route: &Route) -> (String, Option<(&'static str, Vec<u8>)>) {
    let path = route.path.replace("{name}", "latency");
    let body = match route.endpoint {
        Endpoint::IngestMetrics => Some((
            "application/json",
            br#"{"name":"authorised","value":1,"type":"counter"}"#.to_vec(),
        )),
        Endpoint::IngestLatency => Some((
            "application/json",
            br#"{"service":"authorised","latency_ms":5}"#.to_vec(),
        )),
        Endpoint::OtlpExport => Some((
            "application/x-protobuf",
            ExportMetricsServiceRequest::default().encode_to_vec(),
        )),
        Endpoint::MetricWindows
        | Endpoint::Services
        | Endpoint::Prometheus
        | Endpoint::Healthz
        | Endpoint::Readyz => None,
    };
    (path, body)
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    route: &Route,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let (path, body) = valid_request(route);
    let mut req = client.request(route.method.parse().unwrap(), format!("{base}{path}"));
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn assert_unauthorized(what: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) {
    assert_eq!(status, 401, "{what}: {}", String::from_utf8_lossy(body));
    let v: Value = serde_json::from_slice(body).expect("401 body is JSON");
    assert_eq!(v["error"], "missing or invalid bearer token", "{what}");
    assert_eq!(
        headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..]),
        "{what}"
    );
}

async fn walk(srv: &Running, routes: &[Route], base: &str) -> usize {
    let client = reqwest::Client::new();
    let mut walked = 0;
    for route in routes {
        let what = format!("{} {} on {base}", route.method, route.path);
        match route.access {
            Access::Token => {
                for auth in [
                    None,
                    Some("Bearer wrong-token"),
                    Some("Bearer "),
                    Some(&format!("Basic {TOKEN}") as &str),
                    Some(&format!("Bearer {TOKEN}x") as &str),
                    Some(TOKEN),
                ] {
                    let (s, h, b) = call(&client, base, route, auth).await;
                    assert_unauthorized(&format!("{what} with {auth:?}"), s, &h, &b);
                }
                let (s, _, b) = call(&client, base, route, Some(&format!("Bearer {TOKEN}"))).await;
                assert_eq!(
                    s,
                    200,
                    "{what} with the token: {}",
                    String::from_utf8_lossy(&b)
                );
            }
            Access::Open => {
                let (s, _, b) = call(&client, base, route, None).await;
                assert_eq!(s, 200, "{what} is open: {}", String::from_utf8_lossy(&b));
                let (s, _, _) = call(&client, base, route, Some("Bearer wrong")).await;
                assert_eq!(s, 200, "{what} ignores a wrong token");
            }
        }
        walked += 1;
    }
    let _ = srv;
    walked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_refuses_requests_without_it_and_health_stays_open() {
    let mut config = test_config();
    config.token = Some(TOKEN.into());
    let srv = start(config).await;
    let client = reqwest::Client::new();
    poll("ready", || {
        let (c, url) = (client.clone(), srv.url("/readyz"));
        async move { c.get(url).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;

    let api = format!("http://{}", srv.http);
    assert_eq!(walk(&srv, ROUTES, &api).await, ROUTES.len());
    assert!(
        ROUTES.iter().any(|r| r.access == Access::Open),
        "health routes are in the table"
    );
    let otlp_base = format!("http://{}", srv.otlp_http);
    assert_eq!(
        walk(&srv, otlp::http::ROUTES, &otlp_base).await,
        otlp::http::ROUTES.len()
    );

    // Nothing sent without the token was applied; what was sent with it was, once.
    let snap = srv.state.registry().snapshot();
    assert_eq!(snap.counter("authorised", &[]), Some(1));
    assert_eq!(
        snap.histogram("latency", &[("service", "authorised")])
            .map(|h| h.count),
        Some(1)
    );
    // Refused OTLP/HTTP requests are counted, and their bodies were never read.
    assert_eq!(
        snap.counter(
            "abacus_ingest_rejects",
            &[("protocol", "otlp_http"), ("reason", "unauthorized")]
        ),
        Some(6)
    );

    // gRPC: every method of the service.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", srv.otlp_grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        otlp::grpc::METHODS,
        &[crate::hostile::EXPORT_PATH],
        "walk every gRPC method"
    );
    let valid = Bytes::from(ExportMetricsServiceRequest::default().encode_to_vec());
    for (token, body) in [
        (None, valid.clone()),
        (Some("wrong"), valid.clone()),
        // Checked before the message is decoded: garbage without a token is UNAUTHENTICATED.
        (None, Bytes::from_static(b"\xff\xff\xff not protobuf")),
    ] {
        let status = grpc_raw(channel.clone(), body, false, token)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "missing or invalid bearer token");
    }
    grpc_raw(channel.clone(), valid, true, Some(TOKEN))
        .await
        .expect("with the token");
    assert_eq!(
        srv.state.registry().snapshot().counter(
            "abacus_ingest_rejects",
            &[("protocol", "otlp_grpc"), ("reason", "unauthorized")]
        ),
        Some(3)
    );

    // Unknown paths and methods: JSON errors, no data.
    for (method, url, want) in [
        ("GET", format!("{api}/nope"), 404),
        ("DELETE", format!("{api}/metrics"), 405),
        ("GET", format!("{otlp_base}/v1/traces"), 404),
        ("GET", format!("{otlp_base}/v1/metrics"), 405),
    ] {
        let r = client
            .request(method.parse().unwrap(), &url)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{method} {url}");
        let v: Value = r.json().await.expect("JSON error");
        assert!(v["error"].is_string(), "{method} {url}: {v}");
    }

    // StatsD is UDP and has no token: it stays open (documented; keep it on loopback).
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(b"udp_open:1|c", srv.statsd).await.unwrap();
    let state = srv.state.clone();
    poll("StatsD without a token", || {
        let n = state.registry().snapshot().counter("udp_open", &[]);
        async move { (n == Some(1)).then_some(()) }
    })
    .await;
    srv.stop().await.unwrap();
}
