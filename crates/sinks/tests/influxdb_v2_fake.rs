//! The InfluxDB 2 write contract, against a FAKE InfluxDB 2 HTTP server
//! written here: no InfluxDB 2 can be installed on this machine (Debian's
//! influxdb is 1.6, no registry has a 2.x server). The fake records each
//! request and answers what the test scripts; bodies are read back with
//! influxdata's own line-protocol parser.
#![cfg(feature = "influxdb")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::config::{Problems, SinkSpec};
use gateway_core::event::SinkEvent;
use gateway_core::{
    DeviceId, DeviceRegistry, MetricName, Reading, Telemetry, TimeSource, Timestamp,
};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use influxdb_line_protocol::{parse_lines, FieldValue};
use sinks::influxdb::{
    SINK_BATCHES_FAILED, SINK_DEAD_LETTER, SINK_POINTS_WRITTEN, SINK_RETRY_AFTER_CAPPED,
};
use sinks::registry::SinkContext;
use sinks::{OutputLink, SinkConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the fake saw it, the body un-gzipped.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    authorization: Option<String>,
    gzip: bool,
    body: String,
    at: tokio::time::Instant,
}

type Script = Arc<dyn Fn(&Seen, usize) -> (u16, Option<&'static str>) + Send + Sync>;

/// How long the fake takes over a request before it answers.
type Delay = Arc<dyn Fn(&Seen) -> Duration + Send + Sync>;

/// The fake InfluxDB 2: answers with `script(request, index)`; each
/// request is also sent on the returned channel.
async fn fake_influx2(script: Script) -> (String, mpsc::UnboundedReceiver<Seen>) {
    fake_influx2_slow(script, Arc::new(|_| Duration::ZERO)).await
}

/// The fake, answering each request only after `delay(request)`: a
/// server too slow for some writes. The request is sent on the channel
/// when it is read, before the wait.
async fn fake_influx2_slow(
    script: Script,
    delay: Delay,
) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, script, count, delay) =
                (tx.clone(), script.clone(), count.clone(), delay.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (tx, script, count, delay) =
                        (tx.clone(), script.clone(), count.clone(), delay.clone());
                    async move {
                        let path_and_query = req.uri().to_string();
                        let h = |k: &str| {
                            req.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let authorization = h("authorization");
                        let gzip = h("content-encoding").as_deref() == Some("gzip");
                        let raw = req.into_body().collect().await.unwrap().to_bytes();
                        let body = if gzip {
                            let mut s = String::new();
                            flate2::read::GzDecoder::new(&raw[..])
                                .read_to_string(&mut s)
                                .unwrap();
                            s
                        } else {
                            String::from_utf8(raw.to_vec()).unwrap()
                        };
                        let seen = Seen {
                            path_and_query,
                            authorization,
                            gzip,
                            body,
                            at: tokio::time::Instant::now(),
                        };
                        let i = {
                            let mut c = count.lock().unwrap();
                            *c += 1;
                            *c - 1
                        };
                        let (status, retry_after) = script(&seen, i);
                        let wait = delay(&seen);
                        let _ = tx.send(seen);
                        tokio::time::sleep(wait).await;
                        let mut resp = Response::builder().status(status);
                        if let Some(r) = retry_after {
                            resp = resp.header("retry-after", r);
                        }
                        let body = if status >= 400 {
                            format!(r#"{{"code":"x","message":"fake says {status}"}}"#)
                        } else {
                            String::new()
                        };
                        Ok::<_, hyper::Error>(resp.body(Full::new(Bytes::from(body))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

struct Running {
    events: mpsc::Sender<SinkEvent>,
    task: tokio::task::JoinHandle<()>,
    telemetry: Telemetry,
    _state: tempfile::TempDir,
    state_dir: std::path::PathBuf,
}

fn start(url: &str, extra: &str) -> Running {
    let mut text = format!(
        "name = \"v2\"\nurl = \"{url}\"\nversion = 2\norg = \"my org\"\nbucket = \"b&1\"\n\
         token = \"env:FAKE_INFLUX_TOKEN\"\nwrite = [\"readings\"]\n{extra}\n"
    );
    if !extra.contains("max_backoff") {
        text.push_str("max_backoff = \"200ms\"\n");
    }
    if !extra.contains("flush_interval") {
        text.push_str("flush_interval = \"50ms\"\n");
    }
    let mut problems = Problems::default();
    let config = SinkConfig::from_table(
        "influxdb",
        toml::from_str(&text).unwrap(),
        "sink[0]",
        &mut problems,
    )
    .unwrap_or_else(|| panic!("{problems}"));
    let state = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::default();
    let ctx = SinkContext {
        gateway_id: "gw-test".into(),
        state_dir: state.path().to_path_buf(),
        registry: DeviceRegistry::default(),
        units: Default::default(),
        telemetry: telemetry.clone(),
    };
    let (events, rx) = mpsc::channel(64);
    let task = config
        .start(
            &ctx,
            OutputLink {
                messages: rx,
                urgent: None,
                flush: None,
            },
        )
        .unwrap();
    Running {
        events,
        task,
        telemetry,
        state_dir: state.path().to_path_buf(),
        _state: state,
    }
}

fn token() {
    // Every test sets the same value; no test reads a different one.
    std::env::set_var("FAKE_INFLUX_TOKEN", "s3cr3t-token");
}

fn reading(device: &str, metric: &str, value: f64, ms: i64) -> Reading {
    Reading::new(
        DeviceId::new(device).unwrap(),
        MetricName::new(metric).unwrap(),
        value,
        Timestamp::from_millis(ms).unwrap(),
        TimeSource::Event,
    )
    .unwrap()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a request in time")
        .unwrap()
}

async fn counter(r: &Running, name: &str, labels: &[(&str, &str)], want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while r.telemetry.counter_value(name, labels).unwrap_or(0) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} {labels:?} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_write_has_the_v2_path_query_token_and_a_body_influxdatas_parser_reads_back() {
    token();
    for gzip in [false, true] {
        let (url, mut seen) = fake_influx2(Arc::new(|_, _| (204, None))).await;
        let sink = start(&url, &format!("gzip = {gzip}\nmeasurement = \"m x\""));
        sink.events
            .send(SinkEvent::Readings(vec![
                reading("dev,1", "temp", 21.5, 1_000),
                reading("dev,1", "hum=x", 40.0, 1_000),
            ]))
            .await
            .unwrap();
        let r = next(&mut seen).await;
        assert_eq!(
            r.path_and_query,
            "/api/v2/write?org=my+org&bucket=b%261&precision=ns"
        );
        assert_eq!(r.authorization.as_deref(), Some("Token s3cr3t-token"));
        assert_eq!(r.gzip, gzip);
        let lines: Vec<_> = parse_lines(&r.body).collect::<Result<_, _>>().unwrap();
        assert_eq!(lines.len(), 1, "{}", r.body);
        let l = &lines[0];
        assert_eq!(l.series.measurement.as_str(), "m x");
        let tags: Vec<(String, String)> = l
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            tags,
            [
                ("device".into(), "dev,1".into()),
                ("name".into(), "dev,1".into())
            ]
        );
        let fields: Vec<(String, f64)> = l
            .field_set
            .iter()
            .map(|(k, v)| match v {
                FieldValue::F64(f) => (k.to_string(), *f),
                other => panic!("not a float: {other:?}"),
            })
            .collect();
        assert_eq!(fields, [("temp".into(), 21.5), ("hum=x".into(), 40.0)]);
        assert_eq!(l.timestamp, Some(1_000_000_000));
        counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
        drop(sink.events);
        sink.task.await.unwrap();
    }
}

#[tokio::test]
async fn retry_after_of_429_and_503_is_waited_and_the_batch_resent_whole() {
    token();
    let (url, mut seen) = fake_influx2(Arc::new(|_, i| match i {
        0 => (429, Some("1")),
        1 => (503, Some("1")),
        _ => (204, None),
    }))
    .await;
    // Within max_backoff, a server's wait is obeyed as it is.
    let sink = start(&url, "max_backoff = \"2s\"");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    let a = next(&mut seen).await;
    let b = next(&mut seen).await;
    let c = next(&mut seen).await;
    assert!(
        b.at - a.at >= Duration::from_secs(1),
        "429's Retry-After honoured"
    );
    assert!(
        c.at - b.at >= Duration::from_secs(1),
        "503's Retry-After honoured"
    );
    assert_eq!(
        (a.body.as_str(), b.body.as_str()),
        (c.body.as_str(), c.body.as_str())
    );
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "rate_limited")],
        1,
    )
    .await;
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "unavailable")],
        1,
    )
    .await;
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
}

#[tokio::test]
async fn a_retry_after_beyond_max_backoff_never_panics_and_is_cut_to_it() {
    token();
    // A server (or a proxy on its url) asking for the largest u64 of
    // seconds used to overflow `Instant + Duration` and abort the gateway;
    // a day, an HTTP date decades ahead and a number past u64 held the
    // points far beyond max_backoff.
    let (url, mut seen) = fake_influx2(Arc::new(|_, i| match i {
        0 => (429, Some("18446744073709551615")),
        1 => (429, Some("86400")),
        2 => (503, Some("Fri, 31 Dec 2100 23:59:59 GMT")),
        3 => (429, Some("99999999999999999999999")),
        _ => (204, None),
    }))
    .await;
    let max_backoff = Duration::from_millis(300);
    let sink = start(&url, "max_backoff = \"300ms\"");
    let points: Vec<Reading> = (0..250)
        .map(|i| reading(&format!("d{i}"), "t", f64::from(i), 5))
        .collect();
    sink.events.send(SinkEvent::Readings(points)).await.unwrap();
    let mut last = next(&mut seen).await;
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let r = next(&mut seen).await;
        gaps.push(r.at - last.at);
        last = r;
    }
    println!("waits between the 5 requests, max_backoff {max_backoff:?}: {gaps:?}");
    for gap in &gaps {
        // A wait of max_backoff, never the server's (a day or more): the
        // bound leaves room for a loaded machine, not for the server's ask.
        assert!(*gap < max_backoff * 10, "waited {gap:?}: {gaps:?}");
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 250).await;
    counter(&sink, SINK_RETRY_AFTER_CAPPED, &[("output", "v2")], 4).await;
    drop(sink.events);
    sink.task.await.unwrap();
}

#[tokio::test]
async fn a_400_batch_is_split_until_the_bad_point_alone_is_dead_lettered() {
    token();
    let (url, mut seen) = fake_influx2(Arc::new(|s, _| {
        if s.body.contains("bad") {
            (400, None)
        } else {
            (204, None)
        }
    }))
    .await;
    let sink = start(&url, "batch_size = 8\nflush_interval = \"10s\"");
    // Eight records, one of them bad: full batch, sent at once.
    for i in 0..8 {
        let metric = if i == 5 { "bad" } else { "good" };
        sink.events
            .send(SinkEvent::Readings(vec![reading("d", metric, 1.0, i)]))
            .await
            .unwrap();
    }
    counter(&sink, SINK_DEAD_LETTER, &[("output", "v2")], 1).await;
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 7).await;
    let dead = std::fs::read_to_string(sink.state_dir.join("sink-v2/dead-letter.lp")).unwrap();
    assert!(dead.contains("fake says 400"), "{dead}");
    assert_eq!(
        dead.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{dead}"
    );
    assert!(dead.contains("bad=1 5"), "{dead}");
    // Nothing was written twice: the good points went in exactly once.
    let mut written = 0;
    while let Ok(s) = seen.try_recv() {
        if !s.body.contains("bad") {
            written += s.body.lines().count();
        }
    }
    assert_eq!(written, 7);
}

#[tokio::test]
async fn a_413_is_split_and_after_401_the_data_waits_until_the_server_takes_it() {
    token();
    let (url, mut seen) = fake_influx2(Arc::new(|s, i| {
        if i < 2 {
            (401, None)
        } else if s.body.lines().count() > 2 {
            (413, None)
        } else {
            (204, None)
        }
    }))
    .await;
    let sink = start(&url, "batch_size = 8\nflush_interval = \"10s\"");
    for i in 0..8 {
        sink.events
            .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, i)]))
            .await
            .unwrap();
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 8).await;
    assert_eq!(
        sink.telemetry.counter_value(
            SINK_BATCHES_FAILED,
            &[("output", "v2"), ("reason", "unauthorized")]
        ),
        Some(2)
    );
    assert!(
        sink.telemetry
            .counter_value(
                SINK_BATCHES_FAILED,
                &[("output", "v2"), ("reason", "too_large")]
            )
            .unwrap_or(0)
            >= 1
    );
    // Split down to what fits, never dead-lettered: 413 with more than
    // one record is a size problem, not a bad point.
    assert_eq!(
        sink.telemetry
            .counter_value(SINK_DEAD_LETTER, &[("output", "v2")])
            .unwrap_or(0),
        0
    );
    let mut largest_written = 0;
    while let Ok(s) = seen.try_recv() {
        if s.authorization.is_some() && s.body.lines().count() <= 2 {
            largest_written = largest_written.max(s.body.lines().count());
        }
    }
    assert_eq!(largest_written, 2);
}

/// InfluxDB 2.x answers 422 Unprocessable Entity (not 400) for points it
/// will never take: a field type conflict, or times beyond the bucket's
/// retention after a long outage (its docs; InfluxDB 2.7.11 in the wild:
/// `{"code":"unprocessable entity","message":"failure writing points to
/// database: partial write: field type conflict: … dropped=1"}`). The fake
/// gives the 422 as the real server does, for the batch that holds the
/// bad point. A 422 used to be retried as a server error for ever: the
/// oldest batch blocked the outbox and nothing behind it was written.
#[tokio::test]
async fn a_422_batch_is_split_until_the_unprocessable_point_alone_is_dead_lettered() {
    token();
    let (url, mut seen) = fake_influx2(Arc::new(|s, _| {
        if s.body.contains("stale") {
            (422, None)
        } else {
            (204, None)
        }
    }))
    .await;
    let sink = start(&url, "batch_size = 8\nflush_interval = \"10s\"");
    for i in 0..8 {
        let metric = if i == 2 { "stale" } else { "good" };
        sink.events
            .send(SinkEvent::Readings(vec![reading("d", metric, 1.0, i)]))
            .await
            .unwrap();
    }
    counter(&sink, SINK_DEAD_LETTER, &[("output", "v2")], 1).await;
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 7).await;
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "unprocessable")],
        1,
    )
    .await;
    let dead = std::fs::read_to_string(sink.state_dir.join("sink-v2/dead-letter.lp")).unwrap();
    assert!(dead.contains("fake says 422"), "{dead}");
    assert!(dead.contains("stale=1 2"), "{dead}");
    assert_eq!(
        dead.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{dead}"
    );
    // The outbox is empty again: nothing is resent behind the bad point.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sink
        .telemetry
        .gauges("edge_gateway_outbox_messages")
        .iter()
        .any(|(l, v)| l.iter().any(|(k, n)| k == "output" && n == "v2") && *v != 0.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resent = std::iter::from_fn(|| seen.try_recv().ok())
        .filter(|s| s.body.lines().count() == 8)
        .count();
    assert_eq!(resent, 1, "the whole batch was sent more than once");
    drop(sink.events);
    sink.task.await.unwrap();
}

/// `Retry-After: 0`, or an HTTP date already past (a server whose clock is
/// behind the gateway's: edge boxes without an RTC), asks for no wait at
/// all. Obeyed as it was, a server that keeps answering so (an overloaded
/// InfluxDB behind a proxy) was hit again at once, in a loop with no
/// backoff. The server's wait is a floor: the backoff still grows.
#[tokio::test]
async fn a_retry_after_of_zero_or_a_past_date_still_backs_off() {
    token();
    let (url, mut seen) = fake_influx2(Arc::new(|_, i| match i {
        0 | 2 => (503, Some("0")),
        1 | 3 => (429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
        _ => (204, None),
    }))
    .await;
    let sink = start(&url, "max_backoff = \"2s\"");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    let mut last = next(&mut seen).await;
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let r = next(&mut seen).await;
        gaps.push(r.at - last.at);
        last = r;
    }
    // The backoff starts at 200 ms, half of it jitter: never under 100 ms.
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_millis(100),
            "resent after {gap:?}: {gaps:?}"
        );
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
    drop(sink.events);
    sink.task.await.unwrap();
}

/// A refused batch is resent in halves; when the server stops answering
/// part-way (a 503 under load, a timeout), the whole batch is sent again
/// later and split again. The points refused on the first pass were
/// already in the dead-letter file and its counter, and went in again on
/// the second: one bad point, two dead letters, and as many more as the
/// server had hiccups.
#[tokio::test]
async fn a_split_interrupted_by_a_503_sets_each_refused_point_aside_once() {
    token();
    // 0: the batch, 1: its first half, 2: that half's first half, 3: the
    // bad point alone (refused), 4: the next part, answered 503.
    let (url, _seen) = fake_influx2(Arc::new(|s, i| {
        if i == 4 {
            (503, None)
        } else if s.body.contains("bad") {
            (400, None)
        } else {
            (204, None)
        }
    }))
    .await;
    let sink = start(&url, "batch_size = 8\nflush_interval = \"10s\"");
    for i in 0..8 {
        let metric = if i == 0 { "bad" } else { "good" };
        sink.events
            .send(SinkEvent::Readings(vec![reading("d", metric, 1.0, i)]))
            .await
            .unwrap();
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 7).await;
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "unavailable")],
        1,
    )
    .await;
    assert_eq!(
        sink.telemetry
            .counter_value(SINK_DEAD_LETTER, &[("output", "v2")]),
        Some(1)
    );
    let dead = std::fs::read_to_string(sink.state_dir.join("sink-v2/dead-letter.lp")).unwrap();
    assert_eq!(
        dead.lines().filter(|l| !l.starts_with('#')).count(),
        1,
        "{dead}"
    );
    drop(sink.events);
    sink.task.await.unwrap();
}

/// Something on InfluxDB's url (a proxy's error page, a captive portal, a
/// broken server) answers with a status and then a body that does not end.
/// The sink read the whole body into memory before looking at the status:
/// its memory grew at the link's speed until the request's timeout (or
/// the kernel's OOM killer), and the answer was taken for no answer at
/// all. Only the start of an answer is read now. Scripted at the TCP
/// level: no real server can be made to do this.
#[tokio::test]
async fn an_answer_whose_body_never_ends_is_read_only_in_part() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    token();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sent_tx = sent_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\n\
                           transfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // 32 MiB of page, then nothing more, the body still open.
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                let mut sent = 0;
                for _ in 0..512 {
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                    sent += 0x10000;
                }
                let _ = sent_tx.send(sent);
                std::future::pending::<()>().await;
            });
        }
    });
    let sink = start(&url, "timeout = \"3s\"");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    // The answer is the server's 503, not a request that timed out.
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "unavailable")],
        1,
    )
    .await;
    assert_eq!(
        sink.telemetry
            .counter_value(
                SINK_BATCHES_FAILED,
                &[("output", "v2"), ("reason", "network")]
            )
            .unwrap_or(0),
        0
    );
    // The sink stopped reading: the server could not hand it the page.
    let sent = tokio::time::timeout(Duration::from_secs(20), sent_rx.recv())
        .await
        .ok()
        .flatten();
    assert!(
        sent.is_none_or(|n| n < 32 * 1024 * 1024),
        "the whole 32 MiB page was read: {sent:?}"
    );
    drop(sink.events);
    sink.task.await.unwrap();
}

/// A server that takes the request and never answers, then one that
/// closes half-way through its answer: each is a failed request (within
/// `timeout`), the batch stays in the outbox, and the next server that
/// answers gets it. Scripted at the TCP level, as no real server is made
/// to do this on cue.
#[tokio::test]
async fn a_server_that_never_answers_or_hangs_up_mid_answer_loses_nothing() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    token();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (body_tx, mut bodies) = mpsc::unbounded_channel::<(usize, String)>();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let body_tx = body_tx.clone();
            let i = n;
            n += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Headers and the (small, plain) body of one request.
                while !String::from_utf8_lossy(&got).contains(" 5000000\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let _ = body_tx.send((i, String::from_utf8_lossy(&got).into_owned()));
                match i {
                    0 => std::future::pending::<()>().await,
                    1 => {
                        let _ = stream.write_all(b"HTTP/1.1 204 No Con").await;
                    }
                    _ => {
                        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    let sink = start(&url, "timeout = \"500ms\"");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    for want in 0..3 {
        let (i, body) = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(i, want);
        assert!(body.contains("t=1 5000000\n"), "{body}");
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "network")],
        2,
    )
    .await;
    drop(sink.events);
    sink.task.await.unwrap();
}

/// After an outage longer than the retention, whole batches are refused
/// point by point. Each refused point was its own append and fsync of
/// the dead-letter file, done on the async runtime's thread: a batch of
/// 1 000 old points was 1 000 fsyncs in a row (seconds on an SD card)
/// with the gateway's other tasks on that thread stalled. A split's
/// refused points now go in with one write, under one header per message.
#[tokio::test]
async fn the_points_of_one_split_are_set_aside_in_one_write() {
    token();
    let (url, _seen) = fake_influx2(Arc::new(|s, _| {
        if s.body.contains("old") {
            (400, None)
        } else {
            (204, None)
        }
    }))
    .await;
    let sink = start(&url, "batch_size = 8\nflush_interval = \"10s\"");
    for i in 0..8 {
        let metric = if i % 4 == 0 { "good" } else { "old" };
        sink.events
            .send(SinkEvent::Readings(vec![reading("d", metric, 1.0, i)]))
            .await
            .unwrap();
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 2).await;
    counter(&sink, SINK_DEAD_LETTER, &[("output", "v2")], 6).await;
    let dead = std::fs::read_to_string(sink.state_dir.join("sink-v2/dead-letter.lp")).unwrap();
    let points: Vec<&str> = dead.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(points.len(), 6, "{dead}");
    assert_eq!(
        dead.lines().filter(|l| l.starts_with('#')).count(),
        1,
        "{dead}"
    );
    // In the batch's order.
    let times: Vec<&str> = points.iter().filter_map(|l| l.rsplit(' ').next()).collect();
    assert_eq!(
        times,
        ["1000000", "2000000", "3000000", "5000000", "6000000", "7000000"]
    );
    drop(sink.events);
    sink.task.await.unwrap();
}

/// Something other than InfluxDB answers on its url with 200 and a web
/// page: a captive portal or a login proxy in front of it. InfluxDB
/// answers a write 204 (or an error in JSON), never with HTML; the sink
/// took any 2xx for written, counted the points and dropped them from its
/// outbox, and they were never stored. A page is now a failed write: the
/// points wait for the real server. Scripted at the TCP level.
#[tokio::test]
async fn a_web_page_answered_with_200_is_not_taken_for_a_write() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    token();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (body_tx, mut bodies) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let body_tx = body_tx.clone();
            let page = n == 0;
            n += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains(" 5000000\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let _ = body_tx.send(String::from_utf8_lossy(&got).into_owned());
                let answer: Vec<u8> = if page {
                    let html = "<html><body>Sign in to Building-WiFi</body></html>";
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{html}",
                        html.len()
                    )
                    .into_bytes()
                } else {
                    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
                };
                let _ = stream.write_all(&answer).await;
                if !page {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    let sink = start(&url, "");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    for _ in 0..2 {
        let body = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
            .await
            .expect("the point sent again after the page")
            .unwrap();
        assert!(body.contains("t=1 5000000\n"), "{body}");
    }
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
    assert_eq!(
        sink.telemetry.counter_value(
            SINK_BATCHES_FAILED,
            &[("output", "v2"), ("reason", "not_influxdb")]
        ),
        Some(1)
    );
    drop(sink.events);
    sink.task.await.unwrap();
}

/// A proxy on InfluxDB's url that redirects (`http://` to `https://`, a
/// moved path) answers 301/308 with a `Location`. The sink does not follow
/// it (the body would be lost on a 301, and TLS is set from the url), and
/// logged it as a server fault, "InfluxDB write failed", the page's HTML
/// as the message. It is a setting: counted as `reason="redirected"`, the
/// log names the key to fix and where the server points; the points wait.
#[tokio::test]
async fn a_redirect_is_reported_as_the_url_to_fix_and_the_points_wait() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    token();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let moved = n < 2;
            n += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains(" 5000000\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                let answer: &[u8] = if moved {
                    b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://influx.example/api/v2/write\r\n\
                      content-type: text/html\r\ncontent-length: 5\r\nconnection: close\r\n\r\n<a/>\n"
                } else {
                    b"HTTP/1.1 204 No Content\r\n\r\n"
                };
                let _ = stream.write_all(answer).await;
                if !moved {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    let sink = start(&url, "");
    sink.events
        .send(SinkEvent::Readings(vec![reading("d", "t", 1.0, 5)]))
        .await
        .unwrap();
    counter(
        &sink,
        SINK_BATCHES_FAILED,
        &[("output", "v2"), ("reason", "redirected")],
        2,
    )
    .await;
    counter(&sink, SINK_POINTS_WRITTEN, &[("output", "v2")], 1).await;
    assert_eq!(
        sink.telemetry.counter_value(
            SINK_BATCHES_FAILED,
            &[("output", "v2"), ("reason", "server_error")]
        ),
        None
    );
    drop(sink.events);
    sink.task.await.unwrap();
}

/// A server that needs longer than the sink's `timeout` for a large batch
/// (a Pi's SD card behind InfluxDB, a backlog after an outage) and answers
/// small ones at once. The whole batch was sent again after each timeout,
/// never smaller: nothing was ever written and the outbox only grew.
///
/// Against the fake, not a real `influxd`: a real server cannot be made
/// slow on demand. Real time, not tokio's paused clock: the sink's
/// timeout and the fake's delay race over real sockets, which a paused
/// clock would jump past while the bytes are in the kernel. The fake's
/// delay is the only wait; the test follows the requests it reads and
/// the sink's counters and outbox gauge.
///
/// The fake answers 204 to the requests it answers too late as well
/// (InfluxDB may have stored a batch whose answer timed out): the points
/// written counter still counts each point once, and no point answered in
/// time is sent again.
#[tokio::test]
async fn a_batch_slower_than_the_timeout_is_sent_smaller_until_every_point_is_written() {
    const FAST_UP_TO: usize = 10;
    const POINTS: i64 = 100;
    token();
    let (url, mut seen) = fake_influx2_slow(
        Arc::new(|_, _| (204, None)),
        Arc::new(|s| {
            if s.body.lines().count() <= FAST_UP_TO {
                Duration::ZERO
            } else {
                // Well past the sink's timeout below.
                Duration::from_secs(2)
            }
        }),
    )
    .await;
    let sink = start(
        &url,
        "batch_size = 64\ntimeout = \"300ms\"\nflush_interval = \"10ms\"",
    );
    // Four records (one per event taken alone, or fewer when the sink
    // takes several at once), each larger than the server takes in time.
    for chunk in 0..4 {
        let readings = (0..POINTS / 4)
            .map(|i| {
                let ms = chunk * (POINTS / 4) + i;
                reading("d", "t", ms as f64, ms + 1)
            })
            .collect();
        sink.events
            .send(SinkEvent::Readings(readings))
            .await
            .unwrap();
    }
    let mut answered = std::collections::HashSet::new();
    let mut answered_lines = 0;
    let mut requests = 0;
    // A bound on the whole, not on each request: the sink kept sending
    // the same timed-out batch, a request every half second, for ever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.len() < POINTS as usize {
        let s = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "after {requests} requests, only {} of {POINTS} points answered in time",
                    answered.len()
                )
            })
            .unwrap();
        requests += 1;
        let lines: Vec<_> = s.body.lines().map(str::to_string).collect();
        if lines.len() <= FAST_UP_TO {
            answered_lines += lines.len();
            answered.extend(lines);
        }
    }
    assert_eq!(
        answered_lines, POINTS as usize,
        "a written point sent again"
    );
    counter(
        &sink,
        SINK_POINTS_WRITTEN,
        &[("output", "v2")],
        POINTS as u64,
    )
    .await;
    let waiting = || {
        sink.telemetry
            .gauges(sinks::spool::OUTBOX_MESSAGES)
            .into_iter()
            .find(|(labels, _)| labels.iter().any(|(k, v)| k == "output" && v == "v2"))
            .map_or(-1.0, |(_, v)| v)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while waiting() != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never drained: {}",
            waiting()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sink.events);
    sink.task.await.unwrap();
    assert_eq!(
        sink.telemetry
            .counter_value(SINK_POINTS_WRITTEN, &[("output", "v2")]),
        Some(POINTS as u64),
        "each point counted once"
    );
}
