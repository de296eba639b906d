//! What an InfluxDB answer means for the batch that was sent, pure.

use std::time::{Duration, SystemTime};

use hyper::{HeaderMap, StatusCode};

/// The fate of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (204; any 2xx).
    Written,
    /// 429/503: wait as long as the server says (or the backoff), resend.
    Later {
        retry_after: Option<Duration>,
        reason: &'static str,
    },
    /// 400 (bad points), 413 (too large) or 422 (points InfluxDB 2 will
    /// not take: a field type conflict, times beyond the bucket's
    /// retention): never resent as it is; split it, or with one record
    /// left, dead-letter it.
    Refused {
        reason: &'static str,
        message: String,
    },
    /// 401/403/404, a redirect (and 1.x's 500 for a missing retention
    /// policy): the config is wrong; the data waits until it is fixed.
    Misconfigured {
        reason: &'static str,
        message: String,
    },
    /// Anything else (500, 502…): resend after the backoff.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The `error`/`message` InfluxDB puts in its JSON error body, or the body.
pub fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| text.trim().chars().take(500).collect())
}

/// `Retry-After`, as the server or a proxy in front of it sends it.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

/// `Retry-After` (RFC 9110 §10.2.3): delay seconds or an HTTP date, read
/// at `now`. The number is the server's, so any size is taken: more
/// seconds than a `u64` holds is as good as forever (the caller caps every
/// wait at its `max_backoff`). A date in the past means now.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let message = || server_message(body);
    match status.as_u16() {
        // InfluxDB answers a write 204, or an error in JSON: a web page is
        // a captive portal or a login proxy on its url, and the points
        // taken for written were never stored.
        200..=299 if is_html(headers) => Outcome::Failed {
            reason: "not_influxdb",
            message: format!(
                "{status} with a web page, not InfluxDB's answer: check the url ({})",
                message()
            ),
        },
        200..=299 => Outcome::Written,
        429 => Outcome::Later {
            retry_after: retry_after(headers),
            reason: "rate_limited",
        },
        503 => Outcome::Later {
            retry_after: retry_after(headers),
            reason: "unavailable",
        },
        400 => Outcome::Refused {
            reason: "bad_request",
            message: message(),
        },
        413 => Outcome::Refused {
            reason: "too_large",
            message: message(),
        },
        // InfluxDB 2's answer for points it refuses on their own (1.x says
        // 400): resent as it was, the batch failed for ever and held every
        // later one behind it.
        422 => Outcome::Refused {
            reason: "unprocessable",
            message: message(),
        },
        401 | 403 => Outcome::Misconfigured {
            reason: "unauthorized",
            message: message(),
        },
        404 => Outcome::Misconfigured {
            reason: "not_found",
            message: message(),
        },
        // A proxy moving `http://` to `https://` or a path: not followed
        // (a 301's body is not resent, TLS is set from the url), and not a
        // fault of the server either: the url is the setting to fix.
        300..=399 => Outcome::Misconfigured {
            reason: "redirected",
            message: format!(
                "{status} to {}",
                headers
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(no Location)")
            ),
        },
        // InfluxDB 1.x answers a `rp=` it does not have with 500, as if
        // it had failed: it is a setting (or a database created again
        // without its policy), and the log must name it.
        500 if message().starts_with("retention policy not found") => Outcome::Misconfigured {
            reason: "not_found",
            message: message(),
        },
        _ => Outcome::Failed {
            reason: "server_error",
            message: format!("{status}: {}", message()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::RETRY_AFTER, retry.parse().unwrap());
        h
    }

    #[test]
    fn answers_map_to_what_happens_to_the_batch() {
        let none = HeaderMap::new();
        let c = |s: u16, h: &HeaderMap, b: &str| {
            classify(StatusCode::from_u16(s).unwrap(), h, b.as_bytes())
        };
        assert_eq!(c(204, &none, ""), Outcome::Written);
        let mut html = HeaderMap::new();
        html.insert(
            hyper::header::CONTENT_TYPE,
            "Text/HTML; charset=utf-8".parse().unwrap(),
        );
        assert!(matches!(
            c(200, &html, "<html>Sign in</html>"),
            Outcome::Failed {
                reason: "not_influxdb",
                ..
            }
        ));
        assert_eq!(
            c(429, &headers("7"), ""),
            Outcome::Later {
                retry_after: Some(Duration::from_secs(7)),
                reason: "rate_limited"
            }
        );
        assert_eq!(
            c(503, &headers("soon"), ""),
            Outcome::Later {
                retry_after: None,
                reason: "unavailable"
            }
        );
        assert_eq!(
            c(
                400,
                &none,
                r#"{"error":"partial write: unable to parse 'x': bad"}"#
            ),
            Outcome::Refused {
                reason: "bad_request",
                message: "partial write: unable to parse 'x': bad".into()
            }
        );
        assert_eq!(
            c(
                404,
                &none,
                r#"{"code":"not found","message":"bucket \"b\" not found"}"#
            ),
            Outcome::Misconfigured {
                reason: "not_found",
                message: "bucket \"b\" not found".into()
            }
        );
        assert!(matches!(
            c(401, &none, ""),
            Outcome::Misconfigured {
                reason: "unauthorized",
                ..
            }
        ));
        assert_eq!(
            c(
                422,
                &none,
                r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: points beyond retention policy dropped=1"}"#
            ),
            Outcome::Refused {
                reason: "unprocessable",
                message: "failure writing points to database: partial write: points beyond retention policy dropped=1".into()
            }
        );
        assert!(matches!(c(500, &none, "boom"), Outcome::Failed { .. }));
        let mut moved = HeaderMap::new();
        moved.insert(
            hyper::header::LOCATION,
            "https://h:8086/write".parse().unwrap(),
        );
        assert_eq!(
            c(308, &moved, "<html/>"),
            Outcome::Misconfigured {
                reason: "redirected",
                message: "308 Permanent Redirect to https://h:8086/write".into()
            }
        );
        assert_eq!(
            c(
                500,
                &none,
                r#"{"error":"retention policy not found: weekly"}"#
            ),
            Outcome::Misconfigured {
                reason: "not_found",
                message: "retention policy not found: weekly".into()
            }
        );
    }

    #[test]
    fn retry_after_takes_seconds_of_any_size_or_a_date_and_never_panics() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("7"), Some(Duration::from_secs(7)));
        assert_eq!(p(" 86400 "), Some(Duration::from_secs(86_400)));
        assert_eq!(
            p("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(p("99999999999999999999999999"), Some(Duration::MAX));
        // 2015-10-21T07:28:00Z is 480 s after `now`.
        assert_eq!(
            p("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(480))
        );
        assert_eq!(p("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "0x10",
            "Wed, 99 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        // Fuzz-style: digits, signs, dates and noise of every length.
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let alphabet = b"0123456789 -+:,GMTWedOct";
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((x >> (i % 58)) as usize + i) % alphabet.len()] as char)
                .collect();
            let _ = p(&text);
        }
    }
}
