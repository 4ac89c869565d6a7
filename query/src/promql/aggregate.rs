//! Aggregation operators with `by` / `without`: `sum`, `avg`, `count`, `min`, `max`, `group`,
//! `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`, `count_values`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

use promql_parser::parser::token::{
    TokenId, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE,
    T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::eval::{unwrap_parens, Elem, Evaluator, StepValue};
use super::functions::{kahan_sum_inc, quantile};
use super::json::{format_float_f, go_fmt_v};
use super::value::{
    execution, is_valid_label_name, not_supported, set_label, EvalError, Labels, METRIC_NAME,
};

/// The largest float that converts to an int64 without overflow (Prometheus' `maxInt64`).
const MAX_INT64_F: f64 = 9_223_372_036_854_774_784.0;

pub(crate) fn eval_aggregate(
    ev: &Evaluator,
    a: &AggregateExpr,
    t: i64,
) -> Result<StepValue, EvalError> {
    let op = a.op.id();
    let (without, grouping): (bool, &[String]) = match &a.modifier {
        None => (false, &[]),
        Some(LabelModifier::Include(l)) => (false, &l.labels),
        Some(LabelModifier::Exclude(l)) => (true, &l.labels),
    };
    let param = || -> Result<&Expr, EvalError> {
        a.param
            .as_deref()
            .map(unwrap_parens)
            .ok_or_else(|| execution(format!("{} requires a parameter", a.op)))
    };
    let out = match op {
        T_TOPK | T_BOTTOMK => {
            let k = ev.eval_scalar(param()?, t)?;
            let input = ev.eval_vector(&a.expr, t)?;
            top_bottom_k(op == T_TOPK, k, input, without, grouping)?
        }
        T_COUNT_VALUES => {
            let label = ev.eval_string(param()?, t)?;
            let input = ev.eval_vector(&a.expr, t)?;
            count_values(&label, input, without, grouping)?
        }
        T_QUANTILE => {
            let q = ev.eval_scalar(param()?, t)?;
            let input = ev.eval_vector(&a.expr, t)?;
            aggregate(op, q, input, without, grouping)
        }
        T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR => {
            let input = ev.eval_vector(&a.expr, t)?;
            aggregate(op, f64::NAN, input, without, grouping)
        }
        _ => return Err(not_supported(&format!("the {} aggregation", a.op))),
    };
    Ok(StepValue::Vector(out))
}

/// The output labels of a group: only the `by` labels, or all labels but the `without` ones
/// and `__name__`.
fn group_labels(labels: &Labels, without: bool, grouping: &[String]) -> Labels {
    let listed = |n: &String| grouping.iter().any(|g| g == n);
    if without {
        labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !listed(n))
            .cloned()
            .collect()
    } else {
        labels.iter().filter(|(n, _)| listed(n)).cloned().collect()
    }
}

/// Running state of one group (Prometheus' `groupedAggregation`).
struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
}

impl Group {
    fn new(op: TokenId, labels: Labels, f: f64) -> Self {
        let mut g = Group {
            labels,
            value: f,
            mean: f,
            kahan_c: 0.0,
            count: 1.0,
            incremental_mean: false,
            values: Vec::new(),
        };
        match op {
            T_STDDEV | T_STDVAR => g.value = if f.is_finite() { 0.0 } else { f64::NAN },
            T_QUANTILE => g.values.push(f),
            T_GROUP => g.value = 1.0,
            _ => {}
        }
        g
    }

    fn add(&mut self, op: TokenId, f: f64) {
        match op {
            T_SUM => (self.value, self.kahan_c) = kahan_sum_inc(f, self.value, self.kahan_c),
            T_AVG => {
                self.count += 1.0;
                if !self.incremental_mean {
                    let (v, c) = kahan_sum_inc(f, self.value, self.kahan_c);
                    if !v.is_infinite() {
                        (self.value, self.kahan_c) = (v, c);
                        return;
                    }
                    // The sum would overflow: continue with the incremental mean.
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan_c /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.kahan_c) =
                    kahan_sum_inc(f / self.count, q * self.mean, q * self.kahan_c);
            }
            T_MAX if self.value < f || self.value.is_nan() => self.value = f,
            T_MIN if self.value > f || self.value.is_nan() => self.value = f,
            T_COUNT => self.count += 1.0,
            T_STDDEV | T_STDVAR => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            T_QUANTILE => self.values.push(f),
            _ => {} // group; min and max when the value stays
        }
    }

    fn result(mut self, op: TokenId, q: f64) -> f64 {
        match op {
            T_SUM => self.value + self.kahan_c,
            T_AVG if self.incremental_mean => self.mean + self.kahan_c,
            T_AVG => self.value / self.count + self.kahan_c / self.count,
            T_COUNT => self.count,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            T_QUANTILE => quantile(q, &mut self.values),
            _ => self.value, // min, max, group
        }
    }
}

fn aggregate(
    op: TokenId,
    q: f64,
    input: Vec<Elem>,
    without: bool,
    grouping: &[String],
) -> Vec<Elem> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for e in &input {
        let labels = group_labels(&e.labels, without, grouping);
        match index.get(&labels) {
            Some(&i) => groups[i].add(op, e.v),
            None => {
                index.insert(labels.clone(), groups.len());
                groups.push(Group::new(op, labels, e.v));
            }
        }
    }
    groups
        .into_iter()
        .map(|mut g| {
            let labels = Rc::new(std::mem::take(&mut g.labels));
            let v = g.result(op, q);
            Elem { labels, v }
        })
        .collect()
}

/// Order of `topk`: descending, NaN last (NaN counts as the smallest value).
fn topk_order(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Order of `bottomk`: ascending, NaN last (NaN counts as the largest value).
fn bottomk_order(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn top_bottom_k(
    top: bool,
    k: f64,
    input: Vec<Elem>,
    without: bool,
    grouping: &[String],
) -> Result<Vec<Elem>, EvalError> {
    if k < 1.0 {
        return Ok(Vec::new());
    }
    if k.is_nan() {
        return Err(execution("Parameter value is NaN"));
    }
    if k >= MAX_INT64_F {
        return Err(execution(format!(
            "Scalar value {} overflows int64",
            go_fmt_v(k)
        )));
    }
    let k = (k as usize).min(input.len());
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Vec<Elem>> = Vec::new();
    for e in input {
        let labels = group_labels(&e.labels, without, grouping);
        match index.get(&labels) {
            Some(&i) => groups[i].push(e),
            None => {
                index.insert(labels, groups.len());
                groups.push(vec![e]);
            }
        }
    }
    let order = if top { topk_order } else { bottomk_order };
    let mut out = Vec::new();
    for mut members in groups {
        // Stable: among equal values the first seen wins, as with Prometheus' heap.
        members.sort_by(|a, b| order(a.v, b.v));
        members.truncate(k);
        out.extend(members);
    }
    Ok(out)
}

fn count_values(
    label: &str,
    input: Vec<Elem>,
    without: bool,
    grouping: &[String],
) -> Result<Vec<Elem>, EvalError> {
    if !is_valid_label_name(label) {
        return Err(execution(format!("invalid label name \"{label}\"")));
    }
    let mut by: Vec<String> = grouping.to_vec();
    if !without {
        by.push(label.to_string());
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, f64)> = Vec::new();
    for e in &input {
        let mut metric = Labels::clone(&e.labels);
        set_label(&mut metric, label, &format_float_f(e.v));
        let labels = group_labels(&metric, without, &by);
        match index.get(&labels) {
            Some(&i) => groups[i].1 += 1.0,
            None => {
                index.insert(labels.clone(), groups.len());
                groups.push((labels, 1.0));
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(labels, v)| Elem {
            labels: Rc::new(labels),
            v,
        })
        .collect())
}
