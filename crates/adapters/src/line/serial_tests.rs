//! The port's lines against a stand-in board (an in-memory pipe) and the
//! paused clock: a board that resets mid-line, and sketches that print a
//! line slowly or pause inside it, which must not be taken for one. The
//! board's pauses (`sleep`) are its own behaviour, not waits for the
//! adapter: the tests wait on the readings it hands on.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::backoff::Backoff;
use gateway_core::clock::SystemClock;
use gateway_core::{AdapterContext, DeviceId, Ingress, MetricName, Telemetry};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{line_gap, line_stall, read_port, Framer};
use crate::line::decode::LineDecoder;
use crate::line::serial_config::{Parity, SerialLineConfig};
use crate::payload::PayloadFormat;

const WAIT: Duration = Duration::from_secs(10);
const INCOMPLETE: &str =
    "edge_gateway_adapter_errors_total{adapter=\"relay\",error_type=\"incomplete_line\"}";

fn config(baud: u32) -> SerialLineConfig {
    SerialLineConfig {
        name: "relay".into(),
        path: "/dev/ttyUSB0".into(),
        baud,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        decoder: LineDecoder::new(PayloadFormat::Csv {
            columns: vec![
                MetricName::new("temperature").unwrap(),
                MetricName::new("humidity").unwrap(),
            ],
        }),
        device: DeviceId::new("node").ok(),
        max_line_bytes: 64,
        max_backoff: Duration::from_secs(1),
    }
}

/// The adapter reading `config`'s port from the other end of `board`,
/// its readings on the receiver, and its telemetry.
fn start(config: SerialLineConfig) -> (DuplexStream, mpsc::Receiver<Ingress>, Telemetry) {
    let (tx, rx) = mpsc::channel(16);
    let ctx = AdapterContext {
        name: "relay".into(),
        ingress: tx.into(),
        shutdown: CancellationToken::new(),
        telemetry: Telemetry::default(),
        clock: Arc::new(SystemClock),
    };
    let telemetry = ctx.telemetry.clone();
    let (board, port) = tokio::io::duplex(256);
    tokio::spawn(async move {
        let mut framer = Framer::new(config.max_line_bytes);
        let mut backoff = Backoff::new(Duration::from_millis(200), config.max_backoff);
        let _ = read_port(port, &config, &ctx, &mut framer, &mut backoff).await;
    });
    (board, rx, telemetry)
}

/// The values of the next readings handed on; the adapter's metrics say
/// why when none come.
async fn values(rx: &mut mpsc::Receiver<Ingress>, telemetry: &Telemetry) -> Vec<f64> {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Ingress::Readings(r))) => r.iter().map(|r| r.value()).collect(),
        Ok(other) => panic!("expected readings, got {other:?}"),
        Err(_) => panic!("no readings: {}", telemetry.render_prometheus()),
    }
}

fn incomplete(telemetry: &Telemetry) -> bool {
    telemetry.render_prometheus().contains(INCOMPLETE)
}

/// Lines refused under `kind`.
fn errors(telemetry: &Telemetry, kind: &str) -> u64 {
    telemetry
        .counter_value(
            "edge_gateway_adapter_errors_total",
            &[("adapter", "relay"), ("error_type", kind)],
        )
        .unwrap_or(0)
}

/// Whether any line was refused, for any reason.
fn refused_any(telemetry: &Telemetry) -> bool {
    telemetry
        .render_prometheus()
        .contains("edge_gateway_adapter_errors_total{adapter=\"relay\"")
}

/// `21.5,4`, the board's boot pause, `22.0,45.1`: the fragment was glued
/// to the first line after the boot (`21.5,422.0,45.1`), refused with it.
#[tokio::test(start_paused = true)]
async fn a_fragment_before_a_reset_is_dropped_and_the_first_line_after_it_taken() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    board.write_all(b"21.5,4").await.unwrap();
    // The board resets and boots (an ESP32: a few hundred milliseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    board.write_all(b"22.0,45.1\r\n").await.unwrap();
    assert_eq!(values(&mut rx, &telemetry).await, [22.0, 45.1]);
    let text = telemetry.render_prometheus();
    assert!(text.contains(&format!("{INCOMPLETE} 1")), "{text}");
    assert_eq!(errors(&telemetry, "csv_column_count"), 0, "{text}");
}

/// A board that resets twice before a line gets out (a brown-out that
/// comes back): the line is read from the last pause, the rest dropped
/// as one cut line.
#[tokio::test(start_paused = true)]
async fn a_line_refused_is_read_again_from_the_last_pause_inside_it() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    for part in [&b"21.5,4"[..], b"22.0,4"] {
        board.write_all(part).await.unwrap();
        // The board resets and boots.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    board.write_all(b"22.5,46.0\r\n").await.unwrap();
    assert_eq!(values(&mut rx, &telemetry).await, [22.5, 46.0]);
    let text = telemetry.render_prometheus();
    assert!(text.contains(&format!("{INCOMPLETE} 1")), "{text}");
    assert_eq!(errors(&telemetry, "csv_column_count"), 0, "{text}");
}

/// An Arduino's bootloader may take longer than a line may stall: the
/// cut line is dropped when it stalls, before the first line comes.
#[tokio::test(start_paused = true)]
async fn a_fragment_before_a_boot_longer_than_the_stall_is_dropped() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    board.write_all(b"21.5,4").await.unwrap();
    // The board resets and its bootloader waits for an upload.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    board.write_all(b"22.0,45.1\r\n").await.unwrap();
    assert_eq!(values(&mut rx, &telemetry).await, [22.0, 45.1]);
    let text = telemetry.render_prometheus();
    assert!(text.contains(&format!("{INCOMPLETE} 1")), "{text}");
    assert_eq!(errors(&telemetry, "csv_column_count"), 0, "{text}");
}

/// `Serial.print(t); Serial.print(','); sensors.requestTemperatures();
/// Serial.println(h)`: a DS18B20 conversion blocks the sketch 750 ms
/// inside every line. The line decodes whole, so it is taken whole: the
/// pause is the sketch's, not a reset.
#[tokio::test(start_paused = true)]
async fn a_sketch_that_pauses_inside_every_line_has_its_lines_taken_whole() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    for _ in 0..3 {
        board.write_all(b"21.5,").await.unwrap();
        // The sketch's own conversion time.
        tokio::time::sleep(Duration::from_millis(750)).await;
        board.write_all(b"45.1\r\n").await.unwrap();
        assert_eq!(values(&mut rx, &telemetry).await, [21.5, 45.1]);
    }
    assert!(!refused_any(&telemetry), "{}", telemetry.render_prometheus());
}

/// Glued to a cut line's start, a line that is bad on its own too
/// (`x2.0,45.1`: a field not a number) is refused once, as the whole
/// line (`21.5,4x2.0,45.1`: three columns), and no cut line is counted.
#[tokio::test(start_paused = true)]
async fn a_glued_line_bad_after_the_pause_too_is_refused_once_as_a_whole() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    board.write_all(b"21.5,4").await.unwrap();
    // The board resets and boots.
    tokio::time::sleep(Duration::from_millis(300)).await;
    board.write_all(b"x2.0,45.1\r\n23.0,46.0\r\n").await.unwrap();
    // Nothing of the glued line: the next line's readings come first.
    assert_eq!(values(&mut rx, &telemetry).await, [23.0, 46.0]);
    let text = telemetry.render_prometheus();
    assert_eq!(errors(&telemetry, "csv_column_count"), 1, "{text}");
    assert_eq!(errors(&telemetry, "field_not_numeric"), 0, "{text}");
    assert!(!incomplete(&telemetry), "{text}");
}

/// `Serial.print(t); Serial.print(','); …; Serial.println(h)`: a line in
/// parts a few milliseconds apart is one line.
#[tokio::test(start_paused = true)]
async fn a_line_printed_in_parts_a_few_milliseconds_apart_is_one_line() {
    let (mut board, mut rx, telemetry) = start(config(115_200));
    for part in [&b"21.0"[..], b",", b"44.0", b"\r\n"] {
        board.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(values(&mut rx, &telemetry).await, [21.0, 44.0]);
    assert!(!incomplete(&telemetry), "{}", telemetry.render_prometheus());
}

/// At 300 baud a byte takes 33 ms on the wire: a line coming byte by
/// byte, with the bridge handing on a byte at a time, is never cut.
#[tokio::test(start_paused = true)]
async fn a_slow_line_at_a_low_baud_rate_is_not_cut() {
    let (mut board, mut rx, telemetry) = start(config(300));
    for byte in b"19.5,50.0\n" {
        board.write_all(&[*byte]).await.unwrap();
        // Ten bits a byte, and the bridge's latency on top.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(values(&mut rx, &telemetry).await, [19.5, 50.0]);
    assert!(!incomplete(&telemetry), "{}", telemetry.render_prometheus());
}

/// A partial line may stall a second and twice its longest line's time
/// on the wire (20 bits a byte): longer than a DS18B20's 750 ms.
#[test]
fn a_line_stalls_after_a_second_and_twice_the_longest_line_on_the_wire() {
    // 64 bytes: 11 ms at 115200, 133 ms at 9600.
    assert_eq!(line_stall(&config(115_200)), Duration::from_millis(1_011));
    assert_eq!(line_stall(&config(9_600)), Duration::from_millis(1_133));
}

/// The gap is far longer than a byte's time at any baud rate: 100 ms at
/// 115200, fifty bytes' time where that is longer.
#[test]
fn the_gap_is_a_boot_pause_or_fifty_bytes_on_the_wire() {
    assert_eq!(line_gap(&config(115_200)), Duration::from_millis(100));
    assert_eq!(line_gap(&config(9_600)), Duration::from_millis(100));
    // 8N1: ten bits a byte.
    assert_eq!(line_gap(&config(300)), Duration::from_micros(1_666_666));
    let mut slow = config(1_200);
    slow.parity = Parity::Even;
    slow.stop_bits = 2;
    slow.data_bits = 7;
    // 7E2: eleven bits a byte.
    assert_eq!(line_gap(&slow), Duration::from_micros(458_333));
}
