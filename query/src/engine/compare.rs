//! A structural diff of two traces: spans are matched by their service and operation path from
//! the root (`gateway: POST /orders > order-service: create order > ...`), and each path is
//! reported as added, removed, changed in count, or changed in duration.

use std::collections::{BTreeMap, HashMap};

use sightline_proto::SpanRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Count,
    Duration,
    Same,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Count => "count_changed",
            Change::Duration => "duration_changed",
            Change::Same => "same",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathDiff {
    /// `service: operation` from the root to the span.
    pub path: Vec<String>,
    pub change: Change,
    pub count_a: usize,
    pub count_b: usize,
    /// Total duration of the spans on this path.
    pub duration_a_nanos: u64,
    pub duration_b_nanos: u64,
}

impl PathDiff {
    pub fn delta_nanos(&self) -> i128 {
        i128::from(self.duration_b_nanos) - i128::from(self.duration_a_nanos)
    }
}

/// Durations within this share of each other count as unchanged.
const SAME_DURATION_TOLERANCE: f64 = 0.10;

/// Diffs trace `a` against trace `b`; the biggest duration changes come first.
pub fn compare(a: &[SpanRecord], b: &[SpanRecord]) -> Vec<PathDiff> {
    let paths_a = paths(a);
    let paths_b = paths(b);
    let mut keys: Vec<&Vec<String>> = paths_a.keys().chain(paths_b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut diffs: Vec<PathDiff> = keys
        .into_iter()
        .map(|path| {
            let (count_a, duration_a) = paths_a.get(path).copied().unwrap_or((0, 0));
            let (count_b, duration_b) = paths_b.get(path).copied().unwrap_or((0, 0));
            let change = if count_a == 0 {
                Change::Added
            } else if count_b == 0 {
                Change::Removed
            } else if count_a != count_b {
                Change::Count
            } else {
                let larger = duration_a.max(duration_b).max(1) as f64;
                if (duration_a.abs_diff(duration_b) as f64) / larger > SAME_DURATION_TOLERANCE {
                    Change::Duration
                } else {
                    Change::Same
                }
            };
            PathDiff {
                path: path.clone(),
                change,
                count_a,
                count_b,
                duration_a_nanos: duration_a,
                duration_b_nanos: duration_b,
            }
        })
        .collect();
    diffs.sort_by(|x, y| {
        y.delta_nanos()
            .abs()
            .cmp(&x.delta_nanos().abs())
            .then_with(|| x.path.cmp(&y.path))
    });
    diffs
}

/// Count and total duration of the spans at each service/operation path.
fn paths(records: &[SpanRecord]) -> BTreeMap<Vec<String>, (usize, u64)> {
    let index: HashMap<&[u8], usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.span.span_id.as_slice(), i))
        .collect();
    let label = |r: &SpanRecord| format!("{}: {}", r.service_name(), r.span.name);
    let mut out: BTreeMap<Vec<String>, (usize, u64)> = BTreeMap::new();
    for record in records {
        let mut path = vec![label(record)];
        let mut cursor = index.get(record.span.parent_span_id.as_slice()).copied();
        while let Some(parent) = cursor {
            if path.len() > records.len() {
                break; // a parent cycle
            }
            path.push(label(&records[parent]));
            cursor = index
                .get(records[parent].span.parent_span_id.as_slice())
                .copied();
        }
        path.reverse();
        let entry = out.entry(path).or_default();
        entry.0 += 1;
        entry.1 += record
            .span
            .end_time_unix_nano
            .saturating_sub(record.span.start_time_unix_nano);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: u8, name: &str, millis: u64) -> SpanRecord {
        let mut record = SpanRecord::default();
        record.span.span_id = vec![id; 8];
        if parent != 0 {
            record.span.parent_span_id = vec![parent; 8];
        }
        record.span.name = name.into();
        record.span.end_time_unix_nano = millis * 1_000_000;
        record
    }

    #[test]
    fn paths_are_matched_and_changes_classified() {
        let a = [
            span(1, 0, "checkout", 100),
            span(2, 1, "db", 20),
            span(3, 1, "pay", 50),
            span(4, 1, "cache", 5),
        ];
        let b = [
            span(1, 0, "checkout", 900),
            span(2, 1, "db", 21),
            span(3, 1, "pay", 800),
            span(5, 3, "retry", 400),
            span(6, 3, "retry", 390),
            span(7, 1, "db", 20),
        ];
        let diffs = compare(&a, &b);
        let summary: Vec<(String, &str, usize, usize)> = diffs
            .iter()
            .map(|d| (d.path.join(" > "), d.change.name(), d.count_a, d.count_b))
            .collect();
        let u = "unknown_service";
        assert_eq!(
            summary,
            vec![
                (format!("{u}: checkout"), "duration_changed", 1, 1),
                (
                    format!("{u}: checkout > {u}: pay > {u}: retry"),
                    "added",
                    0,
                    2
                ),
                (
                    format!("{u}: checkout > {u}: pay"),
                    "duration_changed",
                    1,
                    1
                ),
                (format!("{u}: checkout > {u}: db"), "count_changed", 1, 2),
                (format!("{u}: checkout > {u}: cache"), "removed", 1, 0),
            ]
        );
        assert_eq!(diffs[0].delta_nanos(), 800_000_000);
    }
}
