//! Charts drawn on the server as inline SVG: no JavaScript library, no
//! CDN, and a page that works offline and on a phone. Pure functions of
//! the points, so the sizes and point counts are unit-tested.

use std::fmt::Write;

use super::history::Aggregate;

/// A sparkline of the averages: one polyline, `points` vertices, whole
/// pixels and its look in the stylesheet: 500 of them on one page.
pub fn sparkline(points: &[Aggregate], width: u32, height: u32) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (t0, t1) = time_range(points);
    let (lo, hi) = value_range(points.iter().map(|p| p.avg));
    let mut d = String::new();
    for p in points {
        let x = scale(p.start as f64, t0, t1, 1.0, f64::from(width) - 1.0);
        let y = scale(p.avg, hi, lo, 1.0, f64::from(height) - 1.0);
        let _ = write!(d, "{x:.0},{y:.0} ");
    }
    format!(
        r#"<svg class="s" viewBox="0 0 {width} {height}"><polyline points="{}"/></svg>"#,
        d.trim_end()
    )
}

/// An alert time to mark on a chart.
pub struct Marker {
    pub at: i64,
    pub raised: bool,
    pub label: String,
}

/// The device page's chart: the min–max band, the average line (one
/// vertex per point, `data-points` says how many), alert markers and the
/// value axis' ends.
pub fn chart(points: &[Aggregate], markers: &[Marker], unit: &str, from: i64, to: i64) -> String {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const PAD: f64 = 40.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" data-points="{}">"#,
        points.len()
    );
    if points.is_empty() {
        out.push_str(
            r#"<text x="50%" y="50%" text-anchor="middle">no data in this range</text></svg>"#,
        );
        return out;
    }
    let (lo, hi) = value_range(points.iter().flat_map(|p| [p.min, p.max]));
    let x = |t: i64| scale(t as f64, from as f64, to as f64, PAD, W - 4.0);
    let y = |v: f64| scale(v, hi, lo, 6.0, H - 16.0);
    let mut band = String::new();
    for p in points {
        let _ = write!(band, "{:.1},{:.1} ", x(p.start), y(p.max));
    }
    for p in points.iter().rev() {
        let _ = write!(band, "{:.1},{:.1} ", x(p.start), y(p.min));
    }
    let _ = write!(
        out,
        r#"<polygon class="band" points="{}"/>"#,
        band.trim_end()
    );
    let mut line = String::new();
    for p in points {
        let _ = write!(line, "{:.1},{:.1} ", x(p.start), y(p.avg));
    }
    let _ = write!(
        out,
        r#"<polyline class="avg" fill="none" points="{}"/>"#,
        line.trim_end()
    );
    for m in markers.iter().filter(|m| m.at >= from && m.at <= to) {
        let _ = write!(
            out,
            r#"<line class="marker {}" x1="{x:.1}" x2="{x:.1}" y1="0" y2="{H}"><title>{}</title></line>"#,
            if m.raised { "raised" } else { "cleared" },
            super::pages::esc(&m.label),
            x = x(m.at),
        );
    }
    let _ = write!(
        out,
        r#"<text class="axis" x="2" y="14">{} {u}</text><text class="axis" x="2" y="{}">{} {u}</text></svg>"#,
        fmt_value(hi),
        H - 18.0,
        fmt_value(lo),
        u = super::pages::esc(unit),
    );
    out
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

/// Maps `v` from `[a, b]` to `[c, d]`.
fn scale(v: f64, a: f64, b: f64, c: f64, d: f64) -> f64 {
    if (b - a).abs() < f64::EPSILON {
        return (c + d) / 2.0;
    }
    c + (v - a) / (b - a) * (d - c)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }];
        let svg = chart(&pts, &m, "°C", 0, 50);
        assert!(svg.contains(r#"data-points="5""#));
        let line = svg
            .split(r#"class="avg" fill="none" points=""#)
            .nth(1)
            .unwrap();
        assert_eq!(line.split('"').next().unwrap().split(' ').count(), 5);
        assert!(svg.contains("hot &lt;"));
        assert_eq!(sparkline(&pts, 100, 20).matches(',').count(), 5);
    }
}
