//! Analyses of one trace: the critical path, self time per span, the error propagation path,
//! time per service, and clock-skew findings.
//!
//! - Critical path: walking back from the end of the root, the path follows the child that
//!   finished last before the current point, then that child's own critical path, then the
//!   parent again before the child started. Producer and consumer children are asynchronous: the
//!   parent never waits on them, so they are not on its path. Children are clamped to their
//!   parent's interval.
//! - Self time: the part of a span's interval not covered by any of its children.
//! - Error path: from the deepest ERROR span up to the root, each step marked failing or not.
//! - Clock skew: a synchronous child that starts before its parent or ends after it. The
//!   adjusted start (the child, and its subtree, shifted into the parent) is reported beside the
//!   raw times; the raw times are never replaced.

use std::collections::{BTreeMap, HashMap};

use sightline_proto::SpanRecord;

const KIND_PRODUCER: i32 = 4;
const KIND_CONSUMER: i32 = 5;
const STATUS_ERROR: i32 = 2;

/// One span as the analyses see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanNode {
    pub span_id: Vec<u8>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub service: String,
    pub operation: String,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub error: bool,
    pub depth: usize,
}

impl SpanNode {
    fn is_async(&self) -> bool {
        matches!(self.kind, KIND_PRODUCER | KIND_CONSUMER)
    }
}

/// A stretch of time on the critical path, spent in one span itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSegment {
    pub span: usize,
    pub start: u64,
    pub end: u64,
}

/// A synchronous child outside its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkewFinding {
    pub span: usize,
    pub parent: usize,
    /// Nanoseconds the child starts before its parent (`starts_before_parent`) or ends after it.
    pub starts_before_nanos: u64,
    pub ends_after_nanos: u64,
    /// The child's start once it (and its subtree) is shifted into its parent.
    pub adjusted_start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTime {
    pub name: String,
    pub span_count: usize,
    pub error_count: usize,
    pub self_time_nanos: u64,
    pub critical_path_nanos: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceAnalysis {
    pub spans: Vec<SpanNode>,
    /// The span the critical path starts from: the earliest root.
    pub root: Option<usize>,
    /// In time order.
    pub critical_path: Vec<PathSegment>,
    /// Per span (same indexes as `spans`).
    pub self_time_nanos: Vec<u64>,
    pub critical_path_nanos: Vec<u64>,
    /// From the deepest error span up to its root; empty without errors.
    pub error_path: Vec<usize>,
    pub services: Vec<ServiceTime>,
    pub skew: Vec<SkewFinding>,
}

impl TraceAnalysis {
    /// Analyses the (deduplicated) spans of one trace.
    pub fn of(records: &[SpanRecord]) -> TraceAnalysis {
        let spans = build_tree(records);
        let root = spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.parent.is_none())
            .min_by_key(|(_, s)| (s.start, s.span_id.clone()))
            .map(|(i, _)| i);
        let mut critical_path = Vec::new();
        if let Some(root) = root {
            walk_critical_path(&spans, root, spans[root].end, &mut critical_path);
            critical_path.reverse();
        }
        let mut critical_path_nanos = vec![0; spans.len()];
        for segment in &critical_path {
            critical_path_nanos[segment.span] += segment.end - segment.start;
        }
        let self_time_nanos: Vec<u64> = (0..spans.len()).map(|i| self_time(&spans, i)).collect();
        let error_path = error_path(&spans);
        let skew = clock_skew(&spans);

        let mut by_service: BTreeMap<&str, ServiceTime> = BTreeMap::new();
        for (i, span) in spans.iter().enumerate() {
            let entry = by_service
                .entry(span.service.as_str())
                .or_insert_with(|| ServiceTime {
                    name: span.service.clone(),
                    span_count: 0,
                    error_count: 0,
                    self_time_nanos: 0,
                    critical_path_nanos: 0,
                });
            entry.span_count += 1;
            entry.error_count += usize::from(span.error);
            entry.self_time_nanos += self_time_nanos[i];
            entry.critical_path_nanos += critical_path_nanos[i];
        }
        TraceAnalysis {
            root,
            critical_path,
            self_time_nanos,
            critical_path_nanos,
            error_path,
            services: by_service.into_values().collect(),
            skew,
            spans,
        }
    }
}

fn build_tree(records: &[SpanRecord]) -> Vec<SpanNode> {
    let index: HashMap<&[u8], usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.span.span_id.as_slice(), i))
        .collect();
    let mut spans: Vec<SpanNode> = records
        .iter()
        .map(|record| {
            let span = &record.span;
            SpanNode {
                span_id: span.span_id.clone(),
                parent: index
                    .get(span.parent_span_id.as_slice())
                    .copied()
                    .filter(|_| !span.parent_span_id.is_empty()),
                children: Vec::new(),
                service: record.service_name().to_owned(),
                operation: span.name.clone(),
                kind: span.kind,
                start: span.start_time_unix_nano,
                end: span.end_time_unix_nano.max(span.start_time_unix_nano),
                error: span.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR),
                depth: 0,
            }
        })
        .collect();
    // A span that is its own ancestor (corrupt parent links) is treated as a root.
    for i in 0..spans.len() {
        let mut seen = 0;
        let mut cursor = spans[i].parent;
        while let Some(parent) = cursor {
            seen += 1;
            if parent == i || seen > spans.len() {
                spans[i].parent = None;
                break;
            }
            cursor = spans[parent].parent;
        }
    }
    for i in 0..spans.len() {
        if let Some(parent) = spans[i].parent {
            spans[parent].children.push(i);
        }
    }
    // Depths, iteratively (traces can be deep).
    let roots: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].parent.is_none())
        .collect();
    let mut stack: Vec<(usize, usize)> = roots.into_iter().map(|r| (r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        spans[i].depth = depth;
        for &child in &spans[i].children {
            stack.push((child, depth + 1));
        }
    }
    spans
}

/// Appends, latest first, the critical-path segments of span `i` up to `bound_end`.
fn walk_critical_path(spans: &[SpanNode], i: usize, bound_end: u64, out: &mut Vec<PathSegment>) {
    // Iterative over (span, bound) frames would be kinder to deep traces; depth is bounded by
    // the tree and recursion keeps the algorithm readable. Very deep traces are cut at 10,000.
    if out.len() > 1_000_000 || spans[i].depth > 10_000 {
        return;
    }
    let span = &spans[i];
    let mut cursor = bound_end.min(span.end);
    let mut children: Vec<usize> = span
        .children
        .iter()
        .copied()
        .filter(|&c| !spans[c].is_async())
        .collect();
    children.sort_by_key(|&c| std::cmp::Reverse((spans[c].end.min(span.end), spans[c].start)));
    for child in children {
        if cursor <= span.start {
            break;
        }
        let child_start = spans[child].start.max(span.start);
        let child_end = spans[child].end.min(cursor);
        if child_start >= cursor || child_end <= child_start {
            continue;
        }
        if child_end < cursor {
            out.push(PathSegment {
                span: i,
                start: child_end,
                end: cursor,
            });
        }
        walk_critical_path(spans, child, child_end, out);
        cursor = child_start;
    }
    if cursor > span.start {
        out.push(PathSegment {
            span: i,
            start: span.start,
            end: cursor,
        });
    }
}

fn self_time(spans: &[SpanNode], i: usize) -> u64 {
    let span = &spans[i];
    let mut intervals: Vec<(u64, u64)> = span
        .children
        .iter()
        .map(|&c| (spans[c].start.max(span.start), spans[c].end.min(span.end)))
        .filter(|(start, end)| start < end)
        .collect();
    intervals.sort_unstable();
    let mut covered = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in intervals {
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                covered += e - s;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    if let Some((s, e)) = current {
        covered += e - s;
    }
    (span.end - span.start).saturating_sub(covered)
}

fn error_path(spans: &[SpanNode]) -> Vec<usize> {
    let Some(deepest) = spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.error)
        .max_by_key(|(_, s)| (s.depth, s.end))
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    let mut path = vec![deepest];
    let mut cursor = spans[deepest].parent;
    while let Some(parent) = cursor {
        path.push(parent);
        cursor = spans[parent].parent;
    }
    path
}

fn clock_skew(spans: &[SpanNode]) -> Vec<SkewFinding> {
    // Shifts accumulate down the tree: a child moved with its parent, then into it.
    let mut shift = vec![0i128; spans.len()];
    let mut findings = Vec::new();
    let mut stack: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].parent.is_none())
        .collect();
    while let Some(i) = stack.pop() {
        for &child in &spans[i].children {
            shift[child] = shift[i];
            let c = &spans[child];
            let p = &spans[i];
            if c.is_async() {
                stack.push(child);
                continue;
            }
            let starts_before = p.start.saturating_sub(c.start);
            let ends_after = c.end.saturating_sub(p.end);
            if starts_before > 0 || ends_after > 0 {
                let parent_start = p.start as i128 + shift[i];
                let parent_end = p.end as i128 + shift[i];
                let child_start = c.start as i128 + shift[child];
                let duration = (c.end - c.start) as i128;
                let adjusted = if duration >= parent_end - parent_start {
                    parent_start
                } else {
                    child_start.clamp(parent_start, parent_end - duration)
                };
                shift[child] += adjusted - child_start;
                findings.push(SkewFinding {
                    span: child,
                    parent: i,
                    starts_before_nanos: starts_before,
                    ends_after_nanos: ends_after,
                    adjusted_start: adjusted.max(0) as u64,
                });
            }
            stack.push(child);
        }
    }
    findings.sort_by_key(|f| f.span);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_proto::otlp::trace::v1::Status;

    /// A span of `service` with id `[id; 8]` under `parent` (0 = root), from `start` to `end` (ms).
    fn span(service: &str, id: u8, parent: u8, kind: i32, start: u64, end: u64) -> SpanRecord {
        let mut record = SpanRecord::default();
        record
            .resource
            .attributes
            .push(sightline_proto::otlp::common::v1::KeyValue {
                key: "service.name".into(),
                value: Some(sightline_proto::otlp::common::v1::AnyValue {
                    value: Some(
                        sightline_proto::otlp::common::v1::any_value::Value::StringValue(
                            service.into(),
                        ),
                    ),
                }),
                ..Default::default()
            });
        record.span.span_id = vec![id; 8];
        if parent != 0 {
            record.span.parent_span_id = vec![parent; 8];
        }
        record.span.name = format!("op{id}");
        record.span.kind = kind;
        record.span.start_time_unix_nano = start;
        record.span.end_time_unix_nano = end;
        record
    }

    fn failing(mut record: SpanRecord) -> SpanRecord {
        record.span.status = Some(Status {
            code: 2,
            message: String::new(),
        });
        record
    }

    fn ids(analysis: &TraceAnalysis, path: &[PathSegment]) -> Vec<(u8, u64, u64)> {
        path.iter()
            .map(|s| (analysis.spans[s.span].span_id[0], s.start, s.end))
            .collect()
    }

    #[test]
    fn critical_path_follows_the_last_finishing_children() {
        // gateway 1 [0,100]
        //   order 2 [10,60]
        //     db 3 [15,25]
        //     payment 4 [30,55]
        //   inventory 5 [20,90]  (overlaps order; finishes last)
        //   notify 6 [40,95] producer: asynchronous, never on the path
        let analysis = TraceAnalysis::of(&[
            span("gateway", 1, 0, 2, 0, 100),
            span("order", 2, 1, 3, 10, 60),
            span("db", 3, 2, 3, 15, 25),
            span("payment", 4, 2, 3, 30, 55),
            span("inventory", 5, 1, 3, 20, 90),
            span("notify", 6, 1, 4, 40, 95),
        ]);
        // Worked by hand, backwards from 100: gateway [90,100]; inventory [20,90] (it ends
        // last); before 20, order is clamped to end at 20, and inside it db (clamped to 20)
        // [15,20] then order itself [10,15] (payment starts after 20); then gateway [0,10].
        assert_eq!(
            ids(&analysis, &analysis.critical_path),
            vec![
                (1, 0, 10),
                (2, 10, 15),
                (3, 15, 20),
                (5, 20, 90),
                (1, 90, 100)
            ]
        );
        let total: u64 = analysis.critical_path.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, 100);
        // Self time: gateway 100 - union([10,60],[20,90],[40,95]) = 100 - 85 = 15.
        assert_eq!(analysis.self_time_nanos[0], 15);
        // order: 50 - (10 + 25) = 15.
        assert_eq!(analysis.self_time_nanos[1], 15);
        assert_eq!(analysis.self_time_nanos[2], 10);
        let gateway = &analysis.services[1];
        assert_eq!(
            (gateway.name.as_str(), gateway.critical_path_nanos),
            ("gateway", 20)
        );
        assert!(analysis.skew.is_empty());
        assert!(analysis.error_path.is_empty());
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        let analysis = TraceAnalysis::of(&[
            span("a", 1, 0, 2, 0, 50),
            span("a", 2, 1, 3, 5, 20),
            span("b", 3, 1, 3, 25, 45),
        ]);
        assert_eq!(
            ids(&analysis, &analysis.critical_path),
            vec![(1, 0, 5), (2, 5, 20), (1, 20, 25), (3, 25, 45), (1, 45, 50)]
        );
    }

    #[test]
    fn error_path_runs_from_the_deepest_error_to_the_root() {
        let analysis = TraceAnalysis::of(&[
            failing(span("gateway", 1, 0, 2, 0, 100)),
            span("order", 2, 1, 2, 10, 90),
            failing(span("payment", 3, 2, 3, 20, 80)),
            failing(span("payment", 4, 3, 2, 30, 70)),
            failing(span("other", 5, 1, 3, 91, 95)),
        ]);
        let path: Vec<u8> = analysis
            .error_path
            .iter()
            .map(|&i| analysis.spans[i].span_id[0])
            .collect();
        assert_eq!(path, [4, 3, 2, 1]);
        assert!(!analysis.spans[analysis.error_path[2]].error);
        // Services by name: gateway, order, other, payment.
        assert_eq!(analysis.services[3].name, "payment");
        assert_eq!(analysis.services[3].error_count, 2);
        assert_eq!(analysis.services[1].error_count, 0);
    }

    #[test]
    fn clock_skew_is_reported_with_adjusted_start_and_raw_times_kept() {
        // The child's clock is 30 ns behind: it starts before its parent.
        let analysis = TraceAnalysis::of(&[
            span("a", 1, 0, 2, 100, 200),
            span("b", 2, 1, 2, 80, 120),
            span("b", 3, 2, 3, 90, 110),
            span("c", 4, 1, 5, 150, 400), // a consumer may outlive its parent: no finding
        ]);
        assert_eq!(
            analysis.skew,
            vec![SkewFinding {
                span: 1,
                parent: 0,
                starts_before_nanos: 20,
                ends_after_nanos: 0,
                adjusted_start: 100,
            }]
        );
        // Raw times untouched.
        assert_eq!((analysis.spans[1].start, analysis.spans[1].end), (80, 120));
    }

    #[test]
    fn orphans_and_cycles_do_not_break_the_analysis() {
        let mut looped = span("x", 7, 8, 2, 0, 10);
        looped.span.parent_span_id = vec![8; 8];
        let analysis = TraceAnalysis::of(&[
            span("a", 1, 0, 2, 0, 10),
            span("a", 2, 9, 2, 2, 4), // parent 9 never arrived
            looped,
            span("x", 8, 7, 2, 1, 5),
        ]);
        assert_eq!(analysis.root, Some(0));
        assert_eq!(
            analysis.spans.iter().filter(|s| s.parent.is_none()).count(),
            3
        );
    }
}
