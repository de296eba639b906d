//! Charts drawn on the server as inline SVG: no JavaScript library, no
//! CDN, and a page that works offline and on a phone. Pure functions of
//! the points, so the sizes and point counts are unit-tested.

use std::fmt::Write;

use gateway_core::units::MetricInfo;

use super::history::Aggregate;

/// A sparkline of the averages: one polyline, `points` vertices, whole
/// pixels and its look in the stylesheet: 500 of them on one page. Scaled
/// to its own range, widened to at least `min_span` around its middle so a
/// steady series stays flat; the caller labels it with that range.
pub fn sparkline(points: &[Aggregate], width: u32, height: u32, min_span: f64) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (t0, t1) = time_range(points);
    let (lo, hi) = widen(value_range(points.iter().map(|p| p.avg)), min_span);
    let mut d = String::new();
    for p in points {
        let x = scale(p.start as f64, t0, t1, 1.0, f64::from(width) - 1.0);
        let y = scale(p.avg, hi, lo, 1.0, f64::from(height) - 1.0);
        let _ = write!(d, "{x:.0},{y:.0} ");
    }
    // One vertex draws nothing: a single point is a level across.
    if let [p] = points {
        let y = scale(p.avg, hi, lo, 1.0, f64::from(height) - 1.0);
        d = format!("1,{y:.0} {},{y:.0}", width.saturating_sub(1));
    }
    format!(
        // No viewBox: the stylesheet sizes `.s` at the width and height
        // drawn, so user units are pixels (20 bytes less on each of 500 rows).
        r#"<svg class=s><polyline points="{}"/></svg>"#,
        d.trim_end()
    )
}

/// The lowest and highest reading: what a sparkline's label says. The
/// windows' min and max, not their averages: a fridge that reached
/// 12.1 °C inside an hour averaging 8.2 °C reached 12.1 °C.
pub fn reading_range(points: &[Aggregate]) -> Option<(f64, f64)> {
    let lo = points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let hi = points
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

/// Charts of at most this many points mark each with a dot.
const DOTS_UP_TO: usize = 60;

/// An alert time to mark on a chart.
pub struct Marker {
    pub at: i64,
    pub raised: bool,
    /// Drawn beside the marker (the rule's name).
    pub label: String,
    /// Shown on hover (rule, state, time, value).
    pub title: String,
}

/// Grid lines a chart's value axis draws at most.
const MAX_GRID_LINES: usize = 16;

/// The device page's chart: the min–max band, the average line (one
/// vertex per point, `data-points` says how many), a value axis with
/// grid lines in the metric's unit, a time axis (UTC), and labelled alert
/// markers.
pub fn chart(
    points: &[Aggregate],
    markers: &[Marker],
    info: &MetricInfo,
    from: i64,
    to: i64,
) -> String {
    const W: f64 = 760.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 10.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 24.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" data-points="{}">"#,
        points.len()
    );
    if points.is_empty() {
        out.push_str(
            r#"<text x="50%" y="50%" text-anchor="middle">no data in this range</text></svg>"#,
        );
        return out;
    }
    let (lo, hi) = widen(
        value_range(points.iter().flat_map(|p| [p.min, p.max])),
        super::view::min_span(info),
    );
    let step = nice_step((hi - lo) / 4.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let x = |t: i64| scale(t as f64, from as f64, to as f64, LEFT, W - RIGHT);
    let y = |v: f64| scale(v, hi, lo, TOP, H - BOTTOM);
    // Value axis: grid lines and their values, the unit on top.
    // Counted, not only compared: near ±1e308 a step below the values'
    // precision left `v += step` where it was, and one reading of 1e308
    // made the device page write grid lines until the gateway was killed
    // for memory (24 GB). About five lines fit a nice step.
    let mut v = lo;
    for _ in 0..MAX_GRID_LINES {
        // Past the top, or not comparable (a NaN from an infinite span).
        if v.partial_cmp(&(hi + step / 2.0)).is_none_or(|o| o.is_gt()) {
            break;
        }
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            info.number(if v.abs() < step / 1e6 { 0.0 } else { v }),
            y = y(v),
        );
        v += step;
    }
    let _ = write!(
        out,
        r#"<text class="axis unit" x="{}" y="12" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        super::pages::esc(&info.unit)
    );
    // Time axis.
    let tstep = time_step(to - from);
    let mut t = from.div_euclid(tstep) * tstep + tstep;
    while t < to {
        let _ = write!(
            out,
            r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}"/><text class="axis" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 4.0,
            H - 6.0,
            time_label(t, tstep),
            x = x(t),
        );
        t += tstep;
    }
    let _ = write!(
        out,
        r#"<text class="axis" x="{}" y="{}" text-anchor="end">UTC</text>"#,
        LEFT - 6.0,
        H - 6.0
    );
    // A point stands at its window's middle: an hour's average is not
    // the value at its first second.
    let mid = |p: &Aggregate| x(p.start.saturating_add(p.end) / 2).clamp(LEFT, W - RIGHT);
    // Few points are long windows: the band spans each window, flat, so
    // an hour that reached 12 °C is not drawn as a slope to the next one.
    let few = points.len() <= DOTS_UP_TO;
    let edges = |p: &Aggregate| {
        if few {
            (
                x(p.start).clamp(LEFT, W - RIGHT),
                x(p.end).clamp(LEFT, W - RIGHT),
            )
        } else {
            (mid(p), mid(p))
        }
    };
    let mut band = String::new();
    for p in points {
        let (l, r) = edges(p);
        let _ = write!(band, "{l:.1},{:.1} ", y(p.max));
        if few {
            let _ = write!(band, "{r:.1},{:.1} ", y(p.max));
        }
    }
    for p in points.iter().rev() {
        let (l, r) = edges(p);
        if few {
            let _ = write!(band, "{r:.1},{:.1} ", y(p.min));
        }
        let _ = write!(band, "{l:.1},{:.1} ", y(p.min));
    }
    let _ = write!(
        out,
        r#"<polygon class="band" points="{}"/>"#,
        band.trim_end()
    );
    let mut line = String::new();
    for p in points {
        let _ = write!(line, "{:.1},{:.1} ", mid(p), y(p.avg));
    }
    let _ = write!(
        out,
        r#"<polyline class="avg" fill="none" points="{}"/>"#,
        line.trim_end()
    );
    // A line needs two points: few points get a dot each, and a lone one
    // its min–max bar (its band has no width).
    if points.len() <= DOTS_UP_TO {
        for p in points {
            let (px, py) = (mid(p), y(p.avg));
            if points.len() == 1 && p.max > p.min {
                let _ = write!(
                    out,
                    r#"<line class="whisker" x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}"/>"#,
                    y(p.max),
                    y(p.min)
                );
            }
            let _ = write!(
                out,
                r#"<circle class="dot" cx="{px:.1}" cy="{py:.1}" r="3"/>"#
            );
        }
    }
    // Labels that would overlap the previous one are left to the hover
    // title (and the alert list below the charts).
    let mut last_label = f64::NEG_INFINITY;
    for m in markers.iter().filter(|m| m.at >= from && m.at <= to) {
        let mx = x(m.at);
        let class = if m.raised { "raised" } else { "cleared" };
        let _ = write!(
            out,
            r#"<g class="marker {class}"><title>{}</title><line x1="{mx:.1}" x2="{mx:.1}" y1="{TOP}" y2="{}"/>"#,
            super::pages::esc(&m.title),
            H - BOTTOM,
        );
        if mx - last_label > 90.0 {
            last_label = mx;
            let (anchor, tx) = if mx > W - 120.0 {
                ("end", mx - 3.0)
            } else {
                ("start", mx + 3.0)
            };
            let _ = write!(
                out,
                r#"<text class="mlabel" x="{tx:.1}" y="{}" text-anchor="{anchor}">{} {}</text>"#,
                TOP - 6.0,
                if m.raised { "▲" } else { "✓" },
                super::pages::esc(&m.label),
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|f| f * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A time step giving at most 6 ticks over `span` ms.
fn time_step(span: i64) -> i64 {
    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    [
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        MIN,
        5 * MIN,
        15 * MIN,
        30 * MIN,
        60 * MIN,
        120 * MIN,
        180 * MIN,
        360 * MIN,
        720 * MIN,
        1440 * MIN,
        2880 * MIN,
    ]
    .into_iter()
    .find(|s| span / s <= 6)
    .unwrap_or(10080 * MIN)
}

fn time_label(ms: i64, step: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    if step < 60_000 {
        t.format("%H:%M:%S").to_string()
    } else if step >= 86_400_000 || t.format("%H:%M").to_string() == "00:00" {
        // Whole days, and midnight on a shorter step: the date.
        t.format("%d %b").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// `(lo, hi)` widened around its middle to at least `span`.
fn widen((lo, hi): (f64, f64), span: f64) -> (f64, f64) {
    if hi - lo >= span {
        return (lo, hi);
    }
    // Halves first: `lo + hi` of two values near 1e308 is infinite.
    let mid = lo / 2.0 + hi / 2.0;
    (mid - span / 2.0, mid + span / 2.0)
}

pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn time_range(points: &[Aggregate]) -> (f64, f64) {
    let t0 = points.first().map_or(0, |p| p.start) as f64;
    let t1 = points.last().map_or(0, |p| p.start) as f64;
    (t0, if t1 > t0 { t1 } else { t0 + 1.0 })
}

fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Maps `v` from `[a, b]` to `[c, d]`. In halves: the span of values
/// near ±1e308 (`b - a`, `v - a`) overflows to infinity, and
/// infinity over infinity drew `NaN` points; half of any two finite
/// values' difference is finite, and the ratio is the same.
fn scale(v: f64, a: f64, b: f64, c: f64, d: f64) -> f64 {
    let span = b / 2.0 - a / 2.0;
    if span.abs() < f64::EPSILON / 2.0 {
        return (c + d) / 2.0;
    }
    c + (v / 2.0 - a / 2.0) / span * (d - c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One reading of 1e308 (a sensor gone wrong): the chart is drawn,
    /// small, instead of grid lines without end.
    #[test]
    fn a_chart_of_huge_values_ends() {
        let info = MetricInfo {
            quantity: "temperature",
            unit: "°C".into(),
            precision: Some(1),
            rank: 0,
        };
        for v in [1e308, -1e308, 1e300] {
            let points = [Aggregate {
                start: 0,
                end: 60_000,
                count: 1,
                avg: v,
                min: v,
                max: v,
                std: 0.0,
            }];
            let svg = chart(&points, &[], &info, 0, 120_000);
            assert!(svg.len() < 20_000, "{} bytes", svg.len());
            assert!(svg.ends_with("</svg>"));
        }
    }

    /// Every number of every `points="…"` and `y…="…"`, `cy="…"` of `svg`.
    fn coordinates(svg: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["points=\"", "y1=\"", "y2=\"", "cy=\"", " y=\""] {
            for part in svg.split(attr).skip(1) {
                let value = part.split('"').next().unwrap_or_default();
                out.extend(value.split([' ', ',']).map(str::to_string));
            }
        }
        out
    }

    /// Readings near ±f64::MAX: max − min overflowed to infinity and the
    /// overview's sparkline (and the chart's lines) drew `NaN` points.
    #[test]
    fn huge_finite_values_draw_finite_points() {
        let info = gateway_core::units::known("temperature");
        let series: [&[f64]; 5] = [
            &[1e308, -1e308],
            &[-1e308, 0.0, 1e308],
            &[f64::MAX, -f64::MAX, 1.0],
            &[1e308, 1e308],
            &[1e308],
        ];
        for values in series {
            let points: Vec<Aggregate> = values
                .iter()
                .enumerate()
                .map(|(i, v)| Aggregate {
                    start: i as i64 * 60_000,
                    end: (i as i64 + 1) * 60_000,
                    count: 1,
                    avg: *v,
                    min: *v,
                    max: *v,
                    std: 0.0,
                })
                .collect();
            let spark = sparkline(&points, 96, 20, 2.0);
            let big = chart(&points, &[], &info, 0, 600_000);
            for svg in [&spark, &big] {
                let numbers = coordinates(svg);
                assert!(!numbers.is_empty(), "{svg}");
                for n in numbers {
                    let v: f64 = n.parse().unwrap_or(f64::NAN);
                    assert!(v.is_finite(), "{values:?}: {n} in {svg}");
                }
            }
            // Drawn across the sparkline's height, not off it.
            for y in ys(&spark) {
                assert!((0.0..=20.0).contains(&y), "{values:?}: y {y} in {spark}");
            }
        }
    }

    fn p(start: i64, avg: f64) -> Aggregate {
        Aggregate {
            start,
            end: start + 10,
            count: 1,
            avg,
            min: avg - 1.0,
            max: avg + 1.0,
            std: 0.0,
        }
    }

    #[test]
    fn the_chart_has_one_vertex_per_point_and_its_markers() {
        let pts: Vec<_> = (0..5).map(|i| p(i * 10, i as f64)).collect();
        let m = [Marker {
            at: 25,
            raised: true,
            label: "hot <".into(),
            title: "hot < raised".into(),
        }];
        let svg = chart(&pts, &m, &gateway_core::units::known("temperature"), 0, 50);
        assert!(svg.contains(r#"data-points="5""#));
        let line = svg
            .split(r#"class="avg" fill="none" points=""#)
            .nth(1)
            .unwrap();
        assert_eq!(line.split('"').next().unwrap().split(' ').count(), 5);
        assert!(svg.contains("hot &lt;"));
        assert!(svg.contains("°C"), "the value axis names the unit");
        assert_eq!(sparkline(&pts, 100, 20, 0.0).matches(',').count(), 5);
    }

    fn ys(svg: &str) -> Vec<f64> {
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        pts.split(' ')
            .map(|xy| xy.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn a_steady_series_stays_flat_beside_a_rising_one() {
        let steady: Vec<_> = [3.3, 3.7, 3.4, 3.6]
            .iter()
            .enumerate()
            .map(|(i, v)| p(i as i64, *v))
            .collect();
        let rising: Vec<_> = [3.5, 5.0, 7.0, 9.5]
            .iter()
            .enumerate()
            .map(|(i, v)| p(i as i64, *v))
            .collect();
        let span = |v: Vec<f64>| {
            v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
        };
        let (s, r) = (
            span(ys(&sparkline(&steady, 96, 20, 2.0))),
            span(ys(&sparkline(&rising, 96, 20, 2.0))),
        );
        assert!(
            s <= 5.0 && r >= 17.0,
            "steady moves {s} px, rising {r} px of 20"
        );
    }

    #[test]
    fn a_lone_point_is_drawn_and_the_label_spans_the_readings() {
        let one = [Aggregate {
            start: 0,
            end: 3_600_000,
            count: 360,
            avg: 8.2,
            min: 8.0,
            max: 12.1,
            std: 0.4,
        }];
        let svg = chart(
            &one,
            &[],
            &gateway_core::units::known("temperature"),
            0,
            3_700_000,
        );
        assert!(svg.contains(r#"<circle class="dot""#), "{svg}");
        assert!(svg.contains(r#"<line class="whisker""#), "{svg}");
        let spark = sparkline(&one, 96, 20, 2.0);
        let pts = spark.split("points=\"").nth(1).unwrap();
        let pts: Vec<&str> = pts.split('"').next().unwrap().split(' ').collect();
        assert_eq!(pts.len(), 2, "a level across: {spark}");
        assert_ne!(pts[0], pts[1]);
        assert_eq!(reading_range(&one), Some((8.0, 12.1)));
    }

    #[test]
    fn axes_have_round_values_and_times() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(time_step(86_400_000), 6 * 3_600_000);
        let pts: Vec<_> = (0..3)
            .map(|i| p(i * 3_600_000, 600.0 + 100.0 * i as f64))
            .collect();
        let svg = chart(
            &pts,
            &[],
            &gateway_core::units::known("co2"),
            0,
            3 * 3_600_000,
        );
        assert!(svg.contains(">600<") && svg.contains(">800<"), "{svg}");
        assert!(svg.contains(">01:00<") && svg.contains(">02:00<"), "{svg}");
    }
}
