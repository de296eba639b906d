//! Tumbling-window statistics per device × metric.
//!
//! Readings go in one at a time with [`Aggregator::ingest`]; closed windows
//! come out of [`Aggregator::close_due`] as one [`DeviceWindow`] per device and
//! window, holding count, mean, population standard deviation, min and max of
//! every metric the device reported in it. The crate is pure logic: no
//! sockets, no clock (the caller passes `now`), no randomness in results, so
//! the same input always gives the same windows.
//!
//! ```
//! use aggregator::{Aggregator, WindowSpec};
//! use gateway_core::{DeviceId, MetricName, Reading, TimeSource, Timestamp};
//!
//! let spec = WindowSpec { window_ms: 60_000, grace_ms: 5_000, max_future_ms: 2_000 };
//! let mut agg = Aggregator::new(spec)?;
//! let ms = |ms| Timestamp::from_millis(ms);
//! let (dev, temp) = (DeviceId::new("room-1")?, MetricName::new("temperature")?);
//! for (t, v) in [(1_000, 21.0), (30_000, 23.0)] {
//!     let r = Reading::new(dev.clone(), temp.clone(), v, ms(t)?, TimeSource::Event)?;
//!     agg.ingest(&r, ms(t)?)?;
//! }
//! // [0 s, 60 s) closes once its 5 s of grace are over.
//! assert_eq!(agg.next_deadline(), Some(ms(65_000)?));
//! assert!(agg.close_due(ms(64_999)?).is_empty());
//! let closed = agg.close_due(ms(65_000)?);
//! let (metric, stats) = &closed[0].metrics[0];
//! assert_eq!((metric.as_str(), stats.count(), stats.avg(), stats.std()), ("temperature", 2, 22.0, 1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! - **Windows** are `[start, start + window_ms)`, aligned to multiples of
//!   `window_ms` since the Unix epoch, so every gateway with the same spec cuts
//!   the same windows and upstream can join them. A reading exactly on a
//!   boundary belongs to the window starting there.
//! - **Closing**: a window is due when `end + grace_ms <= now`. Windows that
//!   received nothing do not exist and emit nothing. Output is ordered by
//!   window start, then device id (byte order); metrics within a device by
//!   name.
//! - **Late** readings, whose window is due or already emitted, are rejected
//!   with [`Rejected::Late`] and change nothing. Emitted windows are remembered
//!   by a *watermark* that only moves forward: "every window ending at or
//!   before this instant is closed". Without it, an NTP step backwards would
//!   make an emitted window look open again, and a second, partial copy of it
//!   would go upstream and overwrite or double the first.
//! - **Future** readings, stamped more than `max_future_ms` after `now`, are
//!   rejected with [`Rejected::Future`]: a device whose clock is years ahead
//!   would otherwise hold a window, and its memory, open for years.
//! - **By their own time**: [`Aggregator::ingest_own_time`] takes a reading
//!   the two rules above refuse, for a caller that acknowledged it and must
//!   not lose it for the gateway's clock: up to a horizon ahead it opens its
//!   window, which closes on the reading's own timeline when the whole
//!   window lies ahead of the gateway clock (a span sent that way is then
//!   amended, never sent twice), or else waits for the clock; in a span
//!   already emitted it opens
//!   a *late amendment* ([`DeviceWindow::amendment`]), due at once, which
//!   adds to what was emitted for the span and replaces nothing.
//!
//! # Statistics
//!
//! [`Stats`] uses Welford's online update rather than sums of squares: the
//! textbook `Σx²/n − mean²` loses every significant digit when the spread is
//! small next to the mean, which is the normal case for energy counters (1e12
//! Wh moving by a few Wh). Welford runs on values shifted by the first one and
//! divided by a power of two chosen from its exponent; the division is exact,
//! and it keeps the squared deltas of values around 1e-300 from underflowing
//! to 0 and those around 1e200 from overflowing. Results agree with an exact
//! two-pass computation to 1e-9 relative across those ranges (see the tests in
//! `stats.rs`). Standard deviation is the population one (`ddof = 0`, numpy's
//! default): a window is everything that was measured in it.
//!
//! # Layout
//!
//! - `stats.rs`: [`Stats`], one 48-byte accumulator.
//! - `series.rs`: the intern table. Each (device, metric) is hashed to a
//!   dense `u32` series id (a pair looked up lately is found by its texts'
//!   addresses instead); a series' key is the ids of its device and its
//!   metric name. A series is forgotten when its last window closes, so
//!   devices that come and go do not grow the tables.
//! - `names.rs`: device ids and metric names, each interned once with a
//!   reference count, whatever the number of series naming it.
//! - `open.rs`: per series id, its open windows' accumulators: the first
//!   inline (56 bytes with its window start), because almost always there
//!   is only one; the others in one map shared by the few series that
//!   have more.
//! - `chunked.rs`: vectors in fixed chunks for the per-series tables, so
//!   growing them never leaves a freed copy behind in the allocator.
//! - `keys.rs`: the interned texts, packed back to back in one buffer (no
//!   allocation per text, nothing long-lived scattered among the
//!   short-lived allocations of each reading).
//! - `window.rs`: [`WindowSpec`], [`Aggregator`]. A `BTreeMap` from window
//!   start to the ids of the series open in it makes the due windows a prefix
//!   and closing proportional to what is emitted, not to what is open.
//! - `snapshot.rs`: the open state as plain data for checkpoints.
//! - the intern map hashes with `gateway_core::hash` (a per-process seeded
//!   folded-multiply hasher), about a quarter faster per ingest than
//!   SipHash on short ids.

mod chunked;
mod keys;
mod names;
mod open;
mod series;
mod snapshot;
mod stats;
mod window;

pub use snapshot::{OpenSeries, Snapshot, StatsState};
pub use stats::Stats;
pub use window::{Aggregator, AheadState, DeviceWindow, Rejected, SpecError, WindowSpec};
