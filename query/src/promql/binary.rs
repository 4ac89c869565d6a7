//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2`, and the set
//! operators `and` / `or` / `unless`, with Prometheus' vector matching (`on`, `ignoring`,
//! `group_left`, `group_right`) and its error messages.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use promql_parser::parser::token::{
    TokenId, T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MOD, T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{check_unique, Elem, Evaluator, StepValue};
use super::value::{
    drop_metric_name, execution, label_value, labels_to_string, remove_label, set_label,
    without_metric_name, EvalError, Labels, METRIC_NAME,
};

pub(crate) fn eval_binary(ev: &Evaluator, b: &BinaryExpr, t: i64) -> Result<StepValue, EvalError> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    let out = match (lhs, rhs) {
        (StepValue::Scalar(l), StepValue::Scalar(r)) => {
            return Ok(StepValue::Scalar(scalar_binop(op, l, r)?))
        }
        (StepValue::Vector(l), StepValue::Scalar(r)) => {
            vector_scalar_binop(op, l, r, false, return_bool)?
        }
        (StepValue::Scalar(l), StepValue::Vector(r)) => {
            vector_scalar_binop(op, r, l, true, return_bool)?
        }
        (StepValue::Vector(l), StepValue::Vector(r)) => {
            let m = Matching::new(b.modifier.as_ref());
            match op {
                T_LAND => vector_and(l, r, &m),
                T_LOR => vector_or(l, r, &m),
                T_LUNLESS => vector_unless(l, r, &m),
                _ => vector_binop(op, l, r, &m, return_bool)?,
            }
        }
        _ => {
            return Err(execution(
                "binary expression must contain only scalar and instant vector types",
            ))
        }
    };
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// Arithmetic operators change what a value means, so they drop the metric name.
fn changes_metric_schema(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Prometheus' `vectorElemBinop` for floats: the value and whether a comparison keeps it.
fn elem_binop(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(execution(format!("operator {op} not allowed here"))),
    })
}

fn scalar_binop(op: TokenId, l: f64, r: f64) -> Result<f64, EvalError> {
    let (v, keep) = elem_binop(op, l, r)?;
    if is_comparison(op) {
        Ok(if keep { 1.0 } else { 0.0 })
    } else {
        Ok(v)
    }
}

fn vector_scalar_binop(
    op: TokenId,
    vector: Vec<Elem>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Vec<Elem>, EvalError> {
    let mut out = Vec::with_capacity(vector.len());
    for e in vector {
        let (l, r) = if scalar_on_left {
            (scalar, e.v)
        } else {
            (e.v, scalar)
        };
        let (mut value, mut keep) = elem_binop(op, l, r)?;
        // A comparison keeps the vector's value even when the scalar is on the left.
        if is_comparison(op) && scalar_on_left {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            let labels = if changes_metric_schema(op) || return_bool {
                drop_metric_name(&e.labels)
            } else {
                e.labels
            };
            out.push(Elem { labels, v: value });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// Prometheus' `VectorMatching`.
struct Matching {
    card: Card,
    /// `on(...)` rather than `ignoring(...)` (no modifier means `ignoring()`).
    on: bool,
    labels: Vec<String>,
    /// Extra labels of `group_left(...)` / `group_right(...)`, copied from the "one" side.
    include: Vec<String>,
}

impl Matching {
    fn new(modifier: Option<&BinModifier>) -> Self {
        let Some(m) = modifier else {
            return Matching {
                card: Card::OneToOne,
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
            };
        };
        let (card, include) = match &m.card {
            VectorMatchCardinality::OneToOne => (Card::OneToOne, Vec::new()),
            VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
            VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
            VectorMatchCardinality::ManyToMany => (Card::ManyToMany, Vec::new()),
        };
        let (on, labels) = match &m.matching {
            None => (false, Vec::new()),
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
        };
        Matching {
            card,
            on,
            labels,
            include,
        }
    }

    fn listed(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l == name)
    }

    /// The labels two elements must share to match: the `on` labels, or every label but the
    /// ignored ones and `__name__`.
    fn signature<'a>(&self, labels: &'a Labels) -> Vec<(&'a str, &'a str)> {
        labels
            .iter()
            .filter(|(n, _)| self.matches_label(n))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    fn matches_label(&self, name: &str) -> bool {
        if self.on {
            self.listed(name)
        } else {
            !self.listed(name) && name != METRIC_NAME
        }
    }

    /// Prometheus' `Labels.MatchLabels`, for error messages.
    fn match_labels(&self, labels: &Labels) -> Labels {
        labels
            .iter()
            .filter(|(n, _)| self.matches_label(n))
            .cloned()
            .collect()
    }
}

/// Prometheus' `VectorBinop`: one-to-one or many-to-one / one-to-many matching.
fn vector_binop(
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Elem>, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    if m.card == Card::ManyToMany {
        return Err(execution("many-to-many only allowed for set operators"));
    }
    // Work as many-to-one: for group_right swap the sides, and swap the operands back below.
    let swapped = m.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };

    let mut one_by_sig: HashMap<Vec<(&str, &str)>, usize> = HashMap::with_capacity(one.len());
    for (i, rs) in one.iter().enumerate() {
        let sig = m.signature(&rs.labels);
        if let Some(&j) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(execution(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_to_string(&m.match_labels(&rs.labels)),
                side,
                labels_to_string(&rs.labels),
                labels_to_string(&one[j].labels),
            )));
        }
        one_by_sig.insert(sig, i);
    }

    let mut matched_once: HashSet<Vec<(&str, &str)>> = HashSet::new();
    let mut matched_groups: HashMap<Vec<(&str, &str)>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in &many {
        let sig = m.signature(&ls.labels);
        let Some(&ri) = one_by_sig.get(&sig) else {
            continue;
        };
        let rs = &one[ri];
        let (fl, fr) = if swapped { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let (mut value, keep) = elem_binop(op, fl, fr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        }
        let mut metric = result_metric(&ls.labels, &rs.labels, op, m);
        if return_bool {
            metric = without_metric_name(&metric);
        }
        if m.card == Card::OneToOne {
            if !matched_once.insert(sig) {
                return Err(execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else if !matched_groups
            .entry(sig)
            .or_default()
            .insert(metric.clone())
        {
            return Err(execution(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        if !keep && !return_bool {
            continue;
        }
        out.push(Elem {
            labels: Rc::new(metric),
            v: value,
        });
    }
    Ok(out)
}

/// Prometheus' `resultMetric`: the labels of the "many" side, without the metric name for
/// arithmetic, reduced to the matching labels for one-to-one `on`, without the ignored labels
/// for one-to-one `ignoring`, plus the `group_x(...)` labels taken from the "one" side.
fn result_metric(many: &Labels, one: &Labels, op: TokenId, m: &Matching) -> Labels {
    let mut out = if changes_metric_schema(op) {
        without_metric_name(many)
    } else {
        many.clone()
    };
    if m.card == Card::OneToOne {
        if m.on {
            out.retain(|(n, _)| m.listed(n));
        } else {
            out.retain(|(n, _)| !m.listed(n));
        }
    }
    for name in &m.include {
        match label_value(one, name) {
            Some(v) if !v.is_empty() => {
                let v = v.to_string();
                set_label(&mut out, name, &v);
            }
            _ => remove_label(&mut out, name),
        }
    }
    out
}

fn vector_and(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<Vec<(&str, &str)>> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
    lhs.iter()
        .filter(|e| right.contains(&m.signature(&e.labels)))
        .cloned()
        .collect()
}

fn vector_or(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let left: HashSet<Vec<(&str, &str)>> = lhs.iter().map(|e| m.signature(&e.labels)).collect();
    let mut out = lhs.clone();
    out.extend(
        rhs.iter()
            .filter(|e| !left.contains(&m.signature(&e.labels)))
            .cloned(),
    );
    out
}

fn vector_unless(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right: HashSet<Vec<(&str, &str)>> = rhs.iter().map(|e| m.signature(&e.labels)).collect();
    lhs.iter()
        .filter(|e| !right.contains(&m.signature(&e.labels)))
        .cloned()
        .collect()
}
