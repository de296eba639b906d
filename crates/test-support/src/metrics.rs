//! Reading samples out of the gateway's `/metrics` (the Prometheus text
//! exposition), one way for every test.

/// One sample by its name and labels exactly as printed
/// (`edge_gateway_adapter_readings_total{adapter="relay"}`), or `None`
/// when no such line is there.
pub fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.starts_with(' ').then(|| rest.trim().parse().ok())?
    })
}

/// The sum of every sample of `name`, whatever its labels.
pub fn sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of the samples of `name` whose labels include `label`
/// (`rule="x"`), whatever other labels they carry; `None` when there is
/// no such sample.
pub fn sum_with(body: &str, name: &str, label: &str) -> Option<f64> {
    let samples: Vec<f64> = body
        .lines()
        .filter_map(|l| {
            let labels = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = labels.split_once("} ")?;
            labels
                .split(',')
                .any(|l| l == label)
                .then(|| value.trim().parse().ok())?
        })
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP x_total Things.\n# TYPE x_total counter\n\
        x_total{a=\"1\",reason=\"late\"} 2\nx_total{a=\"2\",reason=\"late\"} 3\n\
        x_total{a=\"2\",reason=\"nan\"} 4\nx_total_more 9\ny 1.5\n";

    #[test]
    fn samples_are_found_by_name_and_labels_and_summed_by_label() {
        assert_eq!(sample(BODY, "x_total{a=\"2\",reason=\"nan\"}"), Some(4.0));
        assert_eq!(sample(BODY, "y"), Some(1.5));
        assert_eq!(
            sample(BODY, "x_total"),
            None,
            "a bare name is not a labelled sample"
        );
        assert_eq!(sum(BODY, "x_total"), 9.0, "x_total_more is another metric");
        assert_eq!(sum_with(BODY, "x_total", "reason=\"late\""), Some(5.0));
        assert_eq!(sum_with(BODY, "x_total", "reason=\"gone\""), None);
    }
}
