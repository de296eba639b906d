//! Logs go to stdout, where journald picks them up; `RUST_LOG` overrides
//! the configured level for one run.
//!
//! Under systemd (`JOURNAL_STREAM` set and stdout still that stream) text
//! lines carry no timestamp, since the journal stamps every line itself,
//! and start with a `<N>` syslog priority, which journald reads
//! (`SyslogLevelPrefix=`, on by default) so `journalctl -p warning` works.

use std::fmt;
use std::os::unix::fs::MetadataExt as _;

use gateway_core::config::{LogConfig, LogFormat};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        // Colour codes only for a person at a terminal, never in journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // A second init (tests, demo) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text if stdout_is_journal() => builder
            .event_format(SyslogPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// systemd sets `JOURNAL_STREAM=device:inode` of the stream it connected
/// to stdout; a redirected stdout has another identity.
fn stdout_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// The syslog priority of a level (RFC 5424 severities).
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes each event with its `<N>` syslog priority.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_severities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
