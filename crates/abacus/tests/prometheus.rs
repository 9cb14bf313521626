//! The Prometheus exposition, parsed back by an independent parser.

use abacus::Registry;
use abacus::exposition::prometheus::{Format, RenderOptions, render, render_registry};

/// The text of `r`, rendered from a snapshot and straight from the registry: both must be
/// the same (the checks below then hold for both paths).
fn render_both(r: &Registry, opts: &RenderOptions) -> String {
    let text = render(&r.snapshot(), opts);
    assert_eq!(render_registry(r, opts), text, "render_registry differs");
    text
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("exposition parses")
}

#[test]
fn exposition_parses_and_histograms_are_consistent() {
    let r = Registry::new();
    let weird = "we\"ird\\svc\nx,y=z";
    for i in 0..1000u64 {
        r.record_latency(["api", "db", weird][(i % 3) as usize], i % 300);
    }
    r.increment_counter("requests", &[("code", "200"), ("method", "GET")], 41);
    r.increment_counter("requests_total", &[("code", "500"), ("method", "GET")], 1);
    r.set_gauge("temperature.celsius", &[("room", "a b")], -3.5);
    r.record_f64("payload", &[], 0.25);
    let text = render_both(&r, &RenderOptions::default());

    // Parser 1: prometheus-parse (lenient; used for names, types and values).
    let scrape = parse(&text);
    let reqs: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "requests_total")
        .collect();
    assert_eq!(reqs.len(), 2, "{text}");
    assert_eq!(text.matches("# TYPE requests_total counter").count(), 1);
    let g = scrape
        .samples
        .iter()
        .find(|s| s.metric == "temperature_celsius")
        .unwrap();
    assert_eq!(g.value, prometheus_parse::Value::Gauge(-3.5));

    // Parser 2: openmetrics-parser's Prometheus grammar (strict; escapes, histogram layout).
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text).expect("strict parse");
    let family = &exposition.families["latency_seconds"];
    let mut services = Vec::new();
    for sample in family.iter_samples() {
        let labels = sample.get_labelset().unwrap();
        let service = labels.get_label_value("service").unwrap().to_owned();
        let openmetrics_parser::PrometheusValue::Histogram(h) = &sample.value else {
            panic!("latency is a histogram")
        };
        let mut last = 0.0;
        for b in &h.buckets {
            assert!(b.count.as_f64() >= last, "buckets are cumulative");
            last = b.count.as_f64();
        }
        assert!(
            h.buckets.last().unwrap().upper_bound.is_infinite(),
            "+Inf bucket last"
        );
        let expect = if service == "api" { 334 } else { 333 };
        assert_eq!(
            last, expect as f64,
            "+Inf bucket equals the count for {service}"
        );
        assert_eq!(h.count, Some(expect));
        services.push(service);
    }
    services.sort();
    assert_eq!(
        services,
        vec!["api".to_owned(), "db".to_owned(), weird.to_owned()],
        "escaped values round-trip"
    );
}

#[test]
fn classic_buckets_count_exactly_at_power_of_two_boundaries() {
    let r = Registry::new();
    for v in 0..=100u64 {
        r.record("size", &[], v);
    }
    let text = render_both(&r, &RenderOptions::default());
    for (le, expect) in [
        ("1", 2),
        ("2", 3),
        ("4", 5),
        ("8", 9),
        ("16", 17),
        ("32", 33),
        ("64", 65),
        ("128", 101),
    ] {
        let line = format!("size_bucket{{le=\"{le}\"}} {expect}\n");
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("size_sum 5050\n"));
    assert!(text.contains("size_count 101\n"));
}

#[test]
fn openmetrics_ends_with_eof_and_names_counter_families_without_total() {
    let r = Registry::new();
    r.increment_counter("jobs", &[], 2);
    let opts = RenderOptions {
        format: Format::OpenMetrics,
        ..RenderOptions::default()
    };
    let text = render_both(&r, &opts);
    assert_eq!(text, "# TYPE jobs counter\njobs_total 2\n# EOF\n");
}

#[test]
fn empty_registry_renders_nothing() {
    assert_eq!(render_both(&Registry::new(), &RenderOptions::default()), "");
}

#[test]
fn negative_observations_get_mirrored_negative_buckets_and_parse_strictly() {
    let r = Registry::new();
    for v in [-3.0, -0.7, 2.0] {
        r.record_f64("delta", &[], v);
    }
    let text = render_both(&r, &RenderOptions::default());
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("strict parse: {e:?}\n{text}"));
    let family = &exposition.families["delta"];
    let sample = family.iter_samples().next().unwrap();
    let openmetrics_parser::PrometheusValue::Histogram(h) = &sample.value else {
        panic!("delta is a histogram")
    };
    let at = |le: f64| {
        h.buckets
            .iter()
            .find(|b| b.upper_bound == le)
            .map(|b| b.count.as_f64())
    };
    assert_eq!(at(-4.0), Some(0.0));
    assert_eq!(at(-2.0), Some(1.0), "-3 is below -2");
    assert_eq!(at(-0.5), Some(2.0), "-0.7 is below -0.5");
    assert_eq!(at(1.0), Some(2.0));
    assert_eq!(at(2.0), Some(3.0));
    assert_eq!(at(f64::INFINITY), Some(3.0));
    assert!(
        !text.contains("delta_sum"),
        "no sum with negative buckets:\n{text}"
    );
    assert!(
        !text.contains("delta_count"),
        "no count without a sum:\n{text}"
    );
    let om = render_both(
        &r,
        &RenderOptions {
            format: Format::OpenMetrics,
            ..RenderOptions::default()
        },
    );
    openmetrics_parser::openmetrics::parse_openmetrics(&om)
        .unwrap_or_else(|e| panic!("strict OpenMetrics parse: {e:?}\n{om}"));
}
