//! `source = "replay"`: a recorded capture played into the same decoding
//! path as the radio, once, at start-up.
//!
//! The recorded spacing is kept (divided by `speed`; 0 plays as fast as the
//! pipeline takes them), measured from each line's `ts`, so a capture with a
//! counter sequence or packet-id repeats behaves as it did on air: the
//! packet-id window is time-based. Lines out of time order are played
//! without a wait. A line that does not parse is counted and skipped.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::advert::{AdvertError, Advertisement};

/// Why a capture could not be played at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the BLE capture {path}: {source}")]
pub struct ReplayError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// What a played capture held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Played {
    pub advertisements: u64,
    pub bad_lines: u64,
}

/// Plays `path` into `tx`: each advertisement with its recorded time (the
/// consumer stamps it with the time it arrives). Returns when the file
/// ends, `stop` fires, or the consumer is gone.
///
/// # Errors
/// The file cannot be opened or read.
pub async fn play(
    path: &Path,
    speed: f64,
    tx: &mpsc::Sender<Advertisement>,
    stop: &CancellationToken,
    mut bad_line: impl FnMut(u64, &AdvertError),
) -> Result<Played, ReplayError> {
    let fail = |source| ReplayError {
        path: path.display().to_string(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(fail)?;
    let mut lines = BufReader::new(file).lines();
    let mut played = Played::default();
    let mut previous: Option<i64> = None;
    let mut number = 0u64;
    loop {
        let line = tokio::select! {
            _ = stop.cancelled() => return Ok(played),
            line = lines.next_line() => line.map_err(fail)?,
        };
        let Some(line) = line else { break };
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let adv = match Advertisement::parse_line(&line) {
            Ok(a) => a,
            Err(e) => {
                played.bad_lines += 1;
                bad_line(number, &e);
                continue;
            }
        };
        let at = adv.time.as_millis();
        if let Some(gap) = previous.map(|p| at - p).filter(|g| *g > 0) {
            if speed > 0.0 {
                let wait = replay_wait(gap, speed);
                tokio::select! {
                    _ = stop.cancelled() => return Ok(played),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        previous = Some(previous.map_or(at, |p| p.max(at)));
        tokio::select! {
            _ = stop.cancelled() => return Ok(played),
            sent = tx.send(adv) => if sent.is_err() { return Ok(played) },
        }
        played.advertisements += 1;
    }
    Ok(played)
}

/// The wait for a `gap_ms` of recorded time at `speed`. Both come from
/// outside (the file's times, the config's factor): a gap of centuries at
/// a speed of 1e-300 is a wait no `Duration` holds, so it saturates at
/// "never" instead of panicking in `div_f64`.
fn replay_wait(gap_ms: i64, speed: f64) -> Duration {
    let seconds = gap_ms.max(0) as f64 / 1000.0 / speed;
    let far = gateway_core::deadline::FAR_FUTURE;
    Duration::try_from_secs_f64(seconds).map_or(far, |wait| wait.min(far))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn any_gap_at_any_speed_is_a_wait_and_never_a_panic() {
        assert_eq!(replay_wait(1000, 2.0), Duration::from_millis(500));
        let far = gateway_core::deadline::FAR_FUTURE;
        for gap in [0, 1, 1000, i64::MAX, i64::MIN, -1] {
            for speed in [1e-300, f64::MIN_POSITIVE, 1e-9, 1.0, 1e300, f64::MAX] {
                let w = replay_wait(gap, speed);
                assert!(w <= far, "{gap} {speed}: {w:?}");
            }
        }
        assert_eq!(replay_wait(i64::MAX, 1e-300), far);
    }

    fn line(ts: &str) -> String {
        format!(
            r#"{{"ts":"{ts}","mac":"A4:C1:38:8D:18:B2","rssi":-60,"service_data":{{"fcd2":"4002ca0903bf13"}}}}"#
        )
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_recorded_spacing_and_skips_bad_lines() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{}", line("2026-11-21T10:00:00Z")).unwrap();
        writeln!(f, "not json").unwrap();
        writeln!(f, "{}", line("2026-11-21T10:00:10Z")).unwrap();
        writeln!(f, "{}", line("2026-11-21T10:00:20Z")).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let mut bad = Vec::new();
        let played = play(f.path(), 2.0, &tx, &stop, |n, _| bad.push(n))
            .await
            .unwrap();
        assert_eq!(
            played,
            Played {
                advertisements: 3,
                bad_lines: 1
            }
        );
        assert_eq!(bad, [2]);
        // 20 s recorded at double speed.
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        for _ in 0..3 {
            assert!(rx.try_recv().is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn speed_zero_does_not_wait() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{}", line("2026-11-21T10:00:00Z")).unwrap();
        writeln!(f, "{}", line("2026-11-21T11:00:00Z")).unwrap();
        let (tx, _rx) = mpsc::channel(8);
        let start = tokio::time::Instant::now();
        let played = play(f.path(), 0.0, &tx, &CancellationToken::new(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(played.advertisements, 2);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_missing_file_is_an_error() {
        let (tx, _rx) = mpsc::channel(1);
        let err = play(
            Path::new("/nonexistent/capture.jsonl"),
            1.0,
            &tx,
            &CancellationToken::new(),
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/capture.jsonl"));
    }
}
