//! The flusher and its sinks.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abacus::Registry;
use abacus::flush::{
    CallbackSink, ChannelSink, Flusher, JsonLinesSink, MemorySink, Sink, TableSink,
};

/// A `Write` whose bytes can be read after the sink consumed it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn background_flusher_delivers_windows_on_its_interval() {
    let registry = Registry::new();
    let sink = MemorySink::new(100);
    let flusher = Flusher::builder(registry.clone())
        .interval(Duration::from_millis(20))
        .sink(sink.clone())
        .spawn()
        .unwrap();
    registry.record_latency("api", 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.windows().len() < 3 {
        assert!(Instant::now() < deadline, "flusher did not tick");
        std::thread::sleep(Duration::from_millis(5));
    }
    let first_with_data = sink.windows().into_iter().find_map(|w| {
        w.histogram("latency", &[("service", "api")])
            .map(|h| h.count)
    });
    assert_eq!(first_with_data, Some(1));
    assert!(flusher.stats().windows >= 3);
    flusher.shutdown();
}

#[test]
fn dropping_the_flusher_flushes_the_last_partial_window() {
    let registry = Registry::new();
    let sink = MemorySink::new(4);
    {
        let _flusher = Flusher::builder(registry.clone())
            .interval(Duration::from_secs(3600))
            .sink(sink.clone())
            .spawn()
            .unwrap();
        registry.increment_counter("jobs", &[], 7);
    }
    assert_eq!(sink.latest().unwrap().counter("jobs", &[]), Some(7));
}

#[test]
fn memory_sink_keeps_only_the_last_windows() {
    let registry = Registry::new();
    let mut sink = MemorySink::new(2);
    for i in 1..=5u64 {
        registry.increment_counter("n", &[], i);
        sink.export(&registry.delta()).unwrap();
    }
    let counts: Vec<_> = sink.windows().iter().map(|w| w.counter("n", &[])).collect();
    assert_eq!(counts, vec![Some(4), Some(5)]);
}

#[test]
fn json_lines_sink_writes_one_parsable_object_per_window() {
    let registry = Registry::new();
    let out = Shared::default();
    let mut sink = JsonLinesSink::new(out.clone());
    for v in [3u64, 5, 100] {
        registry.record_latency("api", v);
    }
    registry.increment_counter("requests", &[("service", "api")], 3);
    sink.export(&registry.delta()).unwrap();
    registry.record_latency("api", 1);
    sink.export(&registry.delta()).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let series = lines[0]["series"].as_array().unwrap();
    let latency = series.iter().find(|s| s["name"] == "latency").unwrap();
    assert_eq!(latency["labels"]["service"], "api");
    assert_eq!(latency["count"], 3);
    assert_eq!(latency["sum"], 108.0);
    assert_eq!(latency["min"], 3.0);
    assert_eq!(latency["max"], 100.0);
    assert_eq!(latency["unit"], "milliseconds");
    let requests = series.iter().find(|s| s["name"] == "requests").unwrap();
    assert_eq!(requests["value"], 3.0);
    assert_eq!(lines[1]["series"][0]["count"], 1);
}

#[test]
fn json_lines_sink_appends_to_a_file() {
    let path = std::env::temp_dir().join(format!("abacus-jsonl-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let registry = Registry::new();
    for _ in 0..2 {
        let mut sink = JsonLinesSink::create(&path).unwrap();
        registry.record_latency("api", 1);
        sink.export(&registry.delta()).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn table_sink_shows_count_and_percentiles_per_service() {
    let registry = Registry::new();
    for v in 1..=100u64 {
        registry.record_latency("checkout", v);
    }
    let out = Shared::default();
    TableSink::new(out.clone())
        .export(&registry.delta())
        .unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let header = text.lines().nth(1).unwrap();
    for col in [
        "series", "count", "rate/s", "min", "p50", "p95", "p99", "max",
    ] {
        assert!(header.contains(col), "{text}");
    }
    let row = text.lines().find(|l| l.contains("checkout")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2], "100", "{row}");
    assert_eq!(cols[4], "1", "min is exact: {row}");
    assert_eq!(*cols.last().unwrap(), "100", "max is exact: {row}");
}

#[test]
fn channel_sink_never_blocks_and_counts_what_it_drops() {
    let registry = Registry::new();
    let (tx, rx) = sync_channel(1);
    let mut sink = ChannelSink::new(tx);
    let dropped = sink.dropped();
    for _ in 0..3 {
        registry.record_latency("a", 1);
        sink.export(&registry.delta()).unwrap();
    }
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert!(rx.try_recv().is_ok());
    drop(rx);
    assert!(
        sink.export(&registry.delta()).is_err(),
        "a closed receiver is an error"
    );
}

#[test]
fn a_failing_sink_does_not_stop_the_others() {
    struct Failing;
    impl Sink for Failing {
        fn export(&mut self, _: &abacus::Snapshot) -> Result<(), abacus::SinkError> {
            Err(abacus::SinkError::Other("store down".into()))
        }
    }
    let registry = Registry::new();
    let seen = Arc::new(Mutex::new(0u64));
    let flusher = {
        let seen = seen.clone();
        Flusher::builder(registry.clone())
            .sink(Failing)
            .sink(CallbackSink(move |w: &abacus::Snapshot| {
                *seen.lock().unwrap() += w.counter("c", &[]).unwrap_or(0);
            }))
            .build()
            .unwrap()
    };
    registry.increment_counter("c", &[], 2);
    flusher.flush();
    registry.increment_counter("c", &[], 3);
    flusher.flush();
    assert_eq!(*seen.lock().unwrap(), 5);
    assert_eq!(flusher.stats().sink_errors, 2);
}

#[test]
fn zero_interval_is_refused() {
    let err = Flusher::builder(Registry::new())
        .interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, abacus::BuildError::ZeroInterval);
}
