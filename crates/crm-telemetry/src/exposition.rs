//! Prometheus text exposition read back: by the tests that check a figure moved,
//! and by the chaos run's report of what each process counted.

use std::collections::BTreeMap;

/// The text of one scrape of `/metrics`.
pub struct Exposition(pub String);

/// One sample: the metric's name, its labels' text (`a="1",b="2"`), its value.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((metric, labels, value.parse::<f64>().ok()?))
        })
}

/// The value of `key` in a sample's labels' text.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

impl Exposition {
    /// The sum of the samples of `name` whose labels include every `labels` pair.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        samples(&self.0)
            .filter(|(metric, label_text, _)| {
                *metric == name
                    && labels
                        .iter()
                        .all(|(key, want)| label(label_text, key) == Some(*want))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// The samples of `name` summed by the value of their label `key` (a sample
    /// without it counts under "").
    pub fn sum_by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for (metric, label_text, value) in samples(&self.0) {
            if metric == name {
                *sums
                    .entry(label(label_text, key).unwrap_or_default().to_owned())
                    .or_default() += value;
            }
        }
        sums
    }

    /// Whether any sample of `name` is there.
    pub fn has(&self, name: &str) -> bool {
        samples(&self.0).any(|(metric, _, _)| metric == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total X\n\
        # TYPE x_total counter\n\
        x_total{code=\"OK\",service=\"a\"} 3\n\
        x_total{code=\"NOT_FOUND\",service=\"a\"} 1\n\
        x_total{code=\"OK\",service=\"b\"} 2\n\
        up 1\n";

    #[test]
    fn samples_are_summed_by_label_and_filtered_by_labels() {
        let text = Exposition(TEXT.to_owned());
        assert_eq!(text.sum("x_total", &[]), 6.0);
        assert_eq!(text.sum("x_total", &[("code", "OK")]), 5.0);
        assert_eq!(
            text.sum("x_total", &[("code", "OK"), ("service", "b")]),
            2.0
        );
        assert_eq!(text.sum("x", &[]), 0.0, "a prefix is not the name");
        let by_code = text.sum_by("x_total", "code");
        assert_eq!(by_code.get("OK"), Some(&5.0));
        assert_eq!(by_code.get("NOT_FOUND"), Some(&1.0));
        assert!(text.has("up") && !text.has("down") && !text.has("x"));
    }
}
