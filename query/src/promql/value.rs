//! Result types ([`Value`], [`Sample`], [`Series`]), [`EvalError`], and the label helpers the
//! evaluator shares.

use std::fmt;
use std::rc::Rc;

/// Labels of a series, sorted by name, `__name__` included.
pub type Labels = Vec<(String, String)>;

/// Prometheus' staleness marker: a NaN with this bit pattern ends a series (lookback stops there).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus' staleness marker (an ordinary NaN is not).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One time series: its labels and its samples `(unix ms, value)` in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector. `t_ms` is the evaluation time, as in Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t_ms: i64,
    pub v: f64,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t_ms: i64,
        v: f64,
    },
    String {
        t_ms: i64,
        v: String,
    },
    /// An instant vector, in evaluation order (`sort()` and `topk()` orders are kept).
    Vector(Vec<Sample>),
    /// A range vector (instant query of `foo[5m]`) or a range query result, sorted by labels.
    Matrix(Vec<Series>),
}

/// Why a query failed. The variant decides the HTTP answer (see [`EvalError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// The query or its parameters are invalid: HTTP 400, `bad_data`.
    Parse(String),
    /// The query cannot be executed (including unsupported features): HTTP 422, `execution`.
    Execution(String),
    /// The query would load or produce more than `max_samples` samples: HTTP 422, `execution`.
    Limit(String),
    /// The query ran longer than the engine's timeout: HTTP 503, `timeout`.
    Timeout(String),
    /// The storage failed: HTTP 500, `internal`.
    Storage(String),
}

impl EvalError {
    /// The message, without the variant.
    pub fn message(&self) -> &str {
        match self {
            EvalError::Parse(m)
            | EvalError::Execution(m)
            | EvalError::Limit(m)
            | EvalError::Timeout(m)
            | EvalError::Storage(m) => m,
        }
    }

    /// Prometheus' `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            EvalError::Parse(_) => "bad_data",
            EvalError::Execution(_) | EvalError::Limit(_) => "execution",
            EvalError::Timeout(_) => "timeout",
            EvalError::Storage(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            EvalError::Parse(_) => 400,
            EvalError::Execution(_) | EvalError::Limit(_) => 422,
            EvalError::Timeout(_) => 503,
            EvalError::Storage(_) => 500,
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EvalError {}

pub(crate) fn execution(msg: impl Into<String>) -> EvalError {
    EvalError::Execution(msg.into())
}

pub(crate) fn not_supported(what: &str) -> EvalError {
    EvalError::Execution(format!("{what} is not supported"))
}

pub(crate) const METRIC_NAME: &str = "__name__";

/// Labels Prometheus removes when an operation changes what a value means
/// (`schema.IsMetadataLabel`): the metric name, and the type and unit labels.
fn is_metadata_label(name: &str) -> bool {
    matches!(name, "__name__" | "__type__" | "__unit__")
}

pub(crate) fn label_value<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sets `name` to `value` keeping the labels sorted; an empty value deletes the label, as
/// Prometheus' label builder does.
pub(crate) fn set_label(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_string(),
        Err(i) if !value.is_empty() => labels.insert(i, (name.to_string(), value.to_string())),
        Err(_) => {}
    }
}

pub(crate) fn remove_label(labels: &mut Labels, name: &str) {
    labels.retain(|(n, _)| n != name);
}

pub(crate) fn without_metric_name(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(n, _)| !is_metadata_label(n))
        .cloned()
        .collect()
}

/// Drops `__name__` (and `__type__`, `__unit__`), sharing the labels when there is nothing to drop.
pub(crate) fn drop_metric_name(labels: &Rc<Labels>) -> Rc<Labels> {
    if labels.iter().any(|(n, _)| is_metadata_label(n)) {
        Rc::new(without_metric_name(labels))
    } else {
        Rc::clone(labels)
    }
}

/// Whether `name` is a valid label name under Prometheus 3's UTF-8 validation.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// Prometheus' `labels.Labels.String()`: `{a="1", b="2"}`.
pub(crate) fn labels_to_string(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if is_legacy_name(name) {
            out.push_str(name);
        } else {
            out.push_str(&go_quote(name));
        }
        out.push('=');
        out.push_str(&go_quote(value));
    }
    out.push('}');
    out
}

fn is_legacy_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A close approximation of Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_label_keeps_order_and_deletes_on_empty() {
        let mut l = labels(&[("a", "1"), ("c", "3")]);
        set_label(&mut l, "b", "2");
        assert_eq!(l, labels(&[("a", "1"), ("b", "2"), ("c", "3")]));
        set_label(&mut l, "a", "");
        assert_eq!(l, labels(&[("b", "2"), ("c", "3")]));
        set_label(&mut l, "zz", "");
        assert_eq!(l, labels(&[("b", "2"), ("c", "3")]));
    }

    #[test]
    fn labels_string_matches_prometheus() {
        let l = labels(&[("__name__", "up"), ("job", "a\"b"), ("service.name", "x")]);
        assert_eq!(
            labels_to_string(&l),
            r#"{__name__="up", job="a\"b", "service.name"="x"}"#
        );
    }

    #[test]
    fn stale_marker_is_not_any_nan() {
        assert!(is_stale(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale(f64::NAN));
        assert!(!is_stale(1.0));
    }
}
