//! Parts of a large trace, so that a client never has to fetch or draw everything at once:
//! a depth limit, collapsed subtrees, and a window around one span. What is left out is
//! counted per collapsed span, never silently dropped.

use std::collections::{HashMap, HashSet};

use sightline_proto::SpanRecord;

/// Which part of a trace to return. The default returns everything.
#[derive(Debug, Clone, Default)]
pub struct TraceSelection {
    /// Keep spans at most this deep (roots are depth 0).
    pub max_depth: Option<usize>,
    /// Hide the descendants of these spans.
    pub collapse: Vec<Vec<u8>>,
    /// Keep only this span, its ancestors, and its descendants down to `window` levels.
    pub around: Option<Vec<u8>>,
    pub window: Option<usize>,
}

impl TraceSelection {
    pub fn is_everything(&self) -> bool {
        self.max_depth.is_none() && self.collapse.is_empty() && self.around.is_none()
    }
}

/// A kept span whose descendants were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collapsed {
    pub span_id: Vec<u8>,
    pub hidden_descendants: usize,
}

/// Applies `selection` to the spans of a trace, keeping their order.
pub fn select(
    records: Vec<SpanRecord>,
    selection: &TraceSelection,
) -> (Vec<SpanRecord>, Vec<Collapsed>) {
    if selection.is_everything() {
        return (records, Vec::new());
    }
    let index: HashMap<&[u8], usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.span.span_id.as_slice(), i))
        .collect();
    let parent: Vec<Option<usize>> = records
        .iter()
        .map(|r| {
            index
                .get(r.span.parent_span_id.as_slice())
                .copied()
                .filter(|_| !r.span.parent_span_id.is_empty())
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            if *p != i {
                children[*p].push(i);
            }
        }
    }
    let roots: Vec<usize> = (0..records.len())
        .filter(|&i| parent[i].is_none_or(|p| p == i))
        .collect();

    let collapse: HashSet<&[u8]> = selection.collapse.iter().map(Vec::as_slice).collect();
    let around = selection
        .around
        .as_deref()
        .and_then(|id| index.get(id).copied());
    let mut around_keep: Option<HashSet<usize>> = None;
    if let Some(target) = around {
        let mut keep = HashSet::new();
        let mut cursor = Some(target);
        while let Some(i) = cursor {
            if !keep.insert(i) {
                break;
            }
            cursor = parent[i];
        }
        around_keep = Some(keep);
    }

    let mut kept = vec![false; records.len()];
    let mut collapsed = Vec::new();
    // Depth-first from the roots, iteratively: (span, depth, depth below the `around` span).
    let mut stack: Vec<(usize, usize, Option<usize>)> =
        roots.iter().map(|&r| (r, 0, None)).collect();
    let mut visited = vec![false; records.len()];
    while let Some((i, depth, below_target)) = stack.pop() {
        if visited[i] {
            continue;
        }
        visited[i] = true;
        let below_target = if Some(i) == around {
            Some(0)
        } else {
            below_target
        };
        let on_target_path =
            around_keep.as_ref().is_none_or(|keep| keep.contains(&i)) || below_target.is_some();
        if !on_target_path {
            continue;
        }
        kept[i] = true;
        let stop_here = selection.max_depth.is_some_and(|max| depth >= max)
            || collapse.contains(records[i].span.span_id.as_slice())
            || below_target.is_some_and(|d| selection.window.is_some_and(|w| d >= w));
        if stop_here {
            let hidden = count_descendants(&children, i);
            if hidden > 0 {
                collapsed.push(Collapsed {
                    span_id: records[i].span.span_id.clone(),
                    hidden_descendants: hidden,
                });
            }
            continue;
        }
        for &child in &children[i] {
            stack.push((child, depth + 1, below_target.map(|d| d + 1)));
        }
    }
    let selected = records
        .into_iter()
        .zip(kept)
        .filter_map(|(record, keep)| keep.then_some(record))
        .collect();
    (selected, collapsed)
}

fn count_descendants(children: &[Vec<usize>], i: usize) -> usize {
    let mut count = 0;
    let mut stack = children[i].clone();
    let mut seen = HashSet::new();
    while let Some(c) = stack.pop() {
        if seen.insert(c) {
            count += 1;
            stack.extend(&children[c]);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: u8) -> SpanRecord {
        let mut record = SpanRecord::default();
        record.span.span_id = vec![id; 8];
        if parent != 0 {
            record.span.parent_span_id = vec![parent; 8];
        }
        record.span.start_time_unix_nano = u64::from(id);
        record
    }

    /// 1 -> (2 -> (4 -> 6), 3 -> 5)
    fn tree() -> Vec<SpanRecord> {
        vec![
            span(1, 0),
            span(2, 1),
            span(3, 1),
            span(4, 2),
            span(5, 3),
            span(6, 4),
        ]
    }

    fn ids(records: &[SpanRecord]) -> Vec<u8> {
        records.iter().map(|r| r.span.span_id[0]).collect()
    }

    #[test]
    fn depth_limit_collapses_and_counts_what_is_hidden() {
        let selection = TraceSelection {
            max_depth: Some(1),
            ..Default::default()
        };
        let (kept, collapsed) = select(tree(), &selection);
        assert_eq!(ids(&kept), [1, 2, 3]);
        let mut collapsed: Vec<(u8, usize)> = collapsed
            .iter()
            .map(|c| (c.span_id[0], c.hidden_descendants))
            .collect();
        collapsed.sort();
        assert_eq!(collapsed, [(2, 2), (3, 1)]);
    }

    #[test]
    fn collapsed_subtree_and_window_around_a_span() {
        let selection = TraceSelection {
            collapse: vec![vec![2; 8]],
            ..Default::default()
        };
        let (kept, collapsed) = select(tree(), &selection);
        assert_eq!(ids(&kept), [1, 2, 3, 5]);
        assert_eq!(
            collapsed,
            [Collapsed {
                span_id: vec![2; 8],
                hidden_descendants: 2
            }]
        );

        let selection = TraceSelection {
            around: Some(vec![2; 8]),
            window: Some(1),
            ..Default::default()
        };
        let (kept, collapsed) = select(tree(), &selection);
        // Ancestors (1), the span (2), one level below it (4); 6 is hidden under 4; 3 and 5 are
        // outside the window.
        assert_eq!(ids(&kept), [1, 2, 4]);
        assert_eq!(
            collapsed,
            [Collapsed {
                span_id: vec![4; 8],
                hidden_descendants: 1
            }]
        );
    }

    #[test]
    fn no_selection_keeps_everything() {
        let (kept, collapsed) = select(tree(), &TraceSelection::default());
        assert_eq!(kept.len(), 6);
        assert!(collapsed.is_empty());
    }
}
