//! Router tests in-process with `oneshot`: no sockets.

use abacus_server::{AppState, Config, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::common::test_config;

struct Api {
    state: AppState,
}

impl Api {
    fn new(config: Config) -> Api {
        Api {
            state: AppState::new(config).unwrap(),
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn post(&self, path: &str, content_type: &str, body: &str) -> (StatusCode, String) {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn close_window(&self) {
        self.state.close_window();
    }
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("error body is JSON");
    v["error"].as_str().expect("error field").to_owned()
}

#[tokio::test]
async fn json_ingest_then_query_returns_exact_aggregates() {
    let api = Api::new(test_config());
    let (s, body) = api
        .post(
            "/metrics",
            "application/json",
            r#"[{"name":"cpu","value":1,"labels":{"host":"a"}},
                {"name":"cpu","value":2,"labels":{"host":"a"}},
                {"name":"cpu","value":4.5,"labels":{"host":"a"}},
                {"name":"cpu","value":10,"labels":{"host":"b"}}]"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"accepted":4,"rejected":0}"#);
    let (s, _) = api
        .post(
            "/metrics",
            "application/x-ndjson",
            "{\"name\":\"hits\",\"value\":3,\"type\":\"counter\"}\n{\"name\":\"hits\",\"value\":4,\"type\":\"counter\"}\n",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.close_window();

    let a = api.get_json("/metrics/cpu?host=a").await;
    let rows = a.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let w = &rows[0];
    assert_eq!(w["count"], 3);
    assert_eq!(w["sum"], 7.5);
    assert_eq!(w["min"], 1.0);
    assert_eq!(w["max"], 4.5);
    assert_eq!(w["kind"], "histogram");
    let p50 = w["p50"].as_f64().unwrap();
    assert!((p50 - 2.0).abs() <= 2.0 * 0.0217, "{p50}");
    assert!(w["timestamp"].as_u64().unwrap() > 1_600_000_000);

    let all = api.get_json("/metrics/cpu").await;
    assert_eq!(all[0]["count"], 4);
    assert_eq!(all[0]["sum"], 17.5);
    assert_eq!(all[0]["max"], 10.0);

    let hits = api.get_json("/metrics/hits").await;
    assert_eq!(hits[0]["kind"], "counter");
    assert_eq!(hits[0]["sum"], 7.0);

    // A second window is a second row; time filters select windows by start.
    api.post(
        "/metrics",
        "application/json",
        r#"{"name":"cpu","value":8,"labels":{"host":"a"}}"#,
    )
    .await;
    api.close_window();
    let two = api.get_json("/metrics/cpu?host=a").await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[1]["sum"], 8.0);
    let future = api.get_json("/metrics/cpu?from=99999999999").await;
    assert_eq!(future.as_array().unwrap().len(), 0);
    assert_eq!(
        api.get_json("/metrics/unknown").await,
        serde_json::json!([])
    );
}

#[tokio::test]
async fn bad_json_is_400_with_json_error_and_other_batches_still_apply() {
    let api = Api::new(test_config());
    let (s, body) = api
        .post("/metrics", "application/json", r#"{"name":"cpu","value":"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("malformed JSON"), "{body}");
    // One bad item rejects its whole batch, and nothing of it is applied.
    let (s, body) = api
        .post(
            "/metrics",
            "application/json",
            r#"[{"name":"cpu","value":1},{"name":"bad name","value":2}]"#,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("item 1"), "{body}");
    let (s, _) = api
        .post(
            "/metrics",
            "application/json",
            r#"{"name":"cpu","value":5}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = api
        .post("/latency", "application/json", r#"{"service":"api"}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    api.close_window();
    let rows = api.get_json("/metrics/cpu").await;
    assert_eq!(rows[0]["count"], 1);
    assert_eq!(rows[0]["sum"], 5.0);
}

#[tokio::test]
async fn wrong_content_type_is_415_and_oversized_body_is_413() {
    let mut config = test_config();
    config.limits.max_body_bytes = 64;
    let api = Api::new(config);
    let (s, body) = api.post("/metrics", "application/xml", "<a/>").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    error_of(&body);
    let big = format!(
        r#"{{"name":"cpu","value":1,"labels":{{"x":"{}"}}}}"#,
        "y".repeat(100)
    );
    let (s, body) = api.post("/metrics", "application/json", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    error_of(&body);
}

#[tokio::test]
async fn fractional_increment_of_an_integer_counter_is_422() {
    let api = Api::new(test_config());
    let (s, _) = api
        .post(
            "/metrics",
            "application/json",
            r#"{"name":"n","value":1,"type":"counter"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = api
        .post(
            "/metrics",
            "application/json",
            r#"{"name":"n","value":0.5,"type":"counter"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn token_is_required_on_ingest_and_query_but_not_on_health() {
    let mut config = test_config();
    config.token = Some("s3cret".into());
    let api = Api::new(config);
    let ingest = |auth: Option<&str>| {
        let mut b = Request::post("/metrics").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::from(r#"{"name":"cpu","value":1}"#)).unwrap()
    };
    let (s, body) = api.send(ingest(None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&body), "missing or invalid bearer token");
    assert_eq!(
        api.send(ingest(Some("Bearer nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.send(ingest(Some("Bearer s3cret"))).await.0,
        StatusCode::OK
    );
    for path in ["/metrics/cpu", "/services", "/metrics"] {
        let (s, _) = api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        let (s, _) = api
            .send(
                Request::get(path)
                    .header(header::AUTHORIZATION, "Bearer s3cret")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (s, _) = api
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    // Not running yet: not ready, but the endpoint is open (503, not 401).
    let (s, _) = api
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn prometheus_exposition_parses_and_openmetrics_is_negotiated() {
    let api = Api::new(test_config());
    api.post(
        "/metrics",
        "application/json",
        r#"[{"name":"hits","value":3,"type":"counter","labels":{"path":"/a"}},
            {"name":"temp","value":21.5,"type":"gauge"}]"#,
    )
    .await;
    api.post(
        "/latency",
        "application/json",
        r#"[{"service":"api","latency_ms":12},{"service":"api","latency_ms":30}]"#,
    )
    .await;
    let (s, text) = api
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert!(matches!(find("hits_total").value, prometheus_parse::Value::Counter(v) if v == 3.0));
    assert!(matches!(find("temp").value, prometheus_parse::Value::Gauge(v) if v == 21.5));
    // The server's own series exist from start-up for every protocol; this one is HTTP's.
    let http_samples = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "abacus_ingest_samples_total"
                && s.labels.get("protocol") == Some("http_json")
        })
        .expect("abacus_ingest_samples_total{protocol=\"http_json\"}");
    assert!(matches!(
        http_samples.value,
        prometheus_parse::Value::Counter(v) if v == 4.0
    ));
    match &find("latency").value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .unwrap();
            assert_eq!(inf.count, 2.0);
        }
        other => panic!("latency is not a histogram: {other:?}"),
    }

    let (s, om) = api
        .send(
            Request::get("/metrics")
                .header(
                    header::ACCEPT,
                    "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}

#[tokio::test]
async fn services_report_rate_error_share_and_latency_quantiles() {
    let api = Api::new(test_config());
    api.post(
        "/metrics",
        "application/json",
        r#"[{"name":"requests","value":200,"type":"counter","labels":{"service":"api"}},
            {"name":"errors","value":10,"type":"counter","labels":{"service":"api"}}]"#,
    )
    .await;
    let lat: Vec<String> = (1..=100)
        .map(|v| format!(r#"{{"service":"api","latency_ms":{v}}}"#))
        .collect();
    api.post("/latency", "application/x-ndjson", &lat.join("\n"))
        .await;
    api.post(
        "/latency",
        "application/json",
        r#"{"service":"db","latency_ms":3}"#,
    )
    .await;
    api.close_window();
    let v = api.get_json("/services").await;
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let api_svc = &services[0];
    assert_eq!(api_svc["service"], "api");
    let w = &api_svc["last_window"];
    assert_eq!(w["requests"], 200.0);
    assert_eq!(w["errors"], 10.0);
    assert_eq!(w["error_share"], 0.05);
    assert_eq!(w["latency_count"], 100);
    let p99 = w["p99"].as_f64().unwrap();
    assert!((p99 - 99.0).abs() <= 99.0 * 0.0217, "{p99}");
    assert_eq!(api_svc["last_5m"]["requests"], 200.0);
    let db = &services[1]["last_window"];
    assert_eq!(db["requests"], Value::Null);
    assert_eq!(db["latency_count"], 1);
    assert_eq!(db["p50"], 3.0);
}

#[tokio::test]
async fn bad_time_range_is_400_and_unknown_path_is_404_json() {
    let api = Api::new(test_config());
    let (s, body) = api
        .send(
            Request::get("/metrics/cpu?from=yesterday")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("from"));
    let (s, body) = api
        .send(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    error_of(&body);
}
