//! A strict parser of Prometheus' text exposition format (0.0.4), for
//! tests that must fail on any line a scraper would refuse or misread.
//!
//! Written here rather than taken from crates.io: the parsers there split
//! lines with regular expressions and accept what Prometheus refuses (an
//! unknown escape in a label value, a second `# TYPE` for one name,
//! samples of one metric apart, a duplicate series). This one follows
//! Prometheus' own `textparse` rules and refuses all of those.

use std::collections::{BTreeMap, HashSet};

/// One sample: metric name, labels (unescaped), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of `text`, or the first line that breaks the format.
///
/// # Errors
/// `line N: why`, for the first problem.
pub fn parse_strict(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the body does not end with a line feed".into());
    }
    let mut samples = Vec::new();
    let mut typed: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().unwrap_or_default();
                    let kind = words.next().unwrap_or_default();
                    check_metric_name(name).map_err(at)?;
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at(format!("unknown type {kind:?}")));
                    }
                    if !typed.insert(name.to_string()) {
                        return Err(at(format!("a second TYPE for {name}")));
                    }
                    if finished.contains(name) || current.as_deref() == Some(name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                }
                Some("HELP") => {
                    check_metric_name(words.next().unwrap_or_default()).map_err(at)?;
                }
                _ => {}
            }
            continue;
        }
        let sample = sample(line).map_err(at)?;
        if current.as_deref() != Some(sample.name.as_str()) {
            if finished.contains(&sample.name) {
                return Err(at(format!("samples of {} are not together", sample.name)));
            }
            if let Some(previous) = current.replace(sample.name.clone()) {
                finished.insert(previous);
            }
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !series.insert(key) {
            return Err(at("the same series twice".into()));
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a label name"))
    }
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // A label name, or the closing brace (a trailing comma is allowed).
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().ok_or("cut short")?;
                    rest = &body[i + 1..];
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("labels are not closed".into()),
            };
            let mut end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    end = i;
                    break;
                }
            }
            let label = &body[start..end];
            check_label_name(label)?;
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("the value of {label} is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("escape \\{other:?} in {label}")),
                    },
                    Some('\n') | None => return Err(format!("the value of {label} is not closed")),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => return Err(format!("{other:?} after the value of {label}")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().unwrap_or_default();
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v if v.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') => {
            return Err(format!("{v:?} is not a number"))
        }
        v => v.parse().map_err(|_| format!("{v:?} is not a number"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("{ts:?} is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_exposition_parses() {
        let text = "# HELP a_total things\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\",y=\"\"} 3\na_total 1 1700000000000\n# TYPE g gauge\ng NaN\n";
        let s = parse_strict(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].labels["x"], "q\"\\\n");
    }

    #[test]
    fn what_a_scraper_refuses_is_refused() {
        for bad in [
            "a{x=\"k\\\"v} 1\nedge_gateway_injected_total 43\n\"} 1\n",
            "a{x=\"\\t\"} 1\n",
            "a inf\n",
            "# TYPE a counter\n# TYPE a counter\na 1\n",
            "a 1\nb 1\na 2\n",
            "a{x=\"1\"} 1\na{x=\"1\"} 2\n",
            "a{x=1} 1\n",
            "1a 1\n",
            "a 1",
        ] {
            assert!(parse_strict(bad).is_err(), "accepted {bad:?}");
        }
    }
}
