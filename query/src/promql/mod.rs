//! PromQL evaluation with Prometheus' semantics (float samples; native histograms are not
//! supported).
//!
//! A query is parsed with `promql-parser`, checked for features this module does not
//! implement (those fail with [`EvalError::Execution`] "... is not supported", never with a
//! silently wrong answer), its selectors are loaded once through a [`Storage`], and the
//! expression is evaluated at each step.
//!
//! - `engine`: [`Engine`] (lookback, limits) with [`Engine::instant`] and [`Engine::range`], and
//!   the [`Storage`] trait the metric store implements.
//! - `eval`: the per-step evaluator: one `select` per selector for the whole query, then
//!   instant selectors (lookback, staleness markers, `offset`, `@`), range vectors (left-open
//!   windows) and subqueries.
//! - `functions`: PromQL functions (`rate` and its family with Prometheus' extrapolation,
//!   `*_over_time`, `histogram_quantile`, math, label and date functions).
//! - `aggregate`: `sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`, `quantile`,
//!   `topk`, `bottomk`, `count_values`, with `by` / `without`.
//! - `binary`: arithmetic, comparison and set operators with vector matching
//!   (`on`, `ignoring`, `group_left`, `group_right`).
//! - `value`: the result types ([`Value`], [`Sample`], [`Series`]) and [`EvalError`].
//! - `json`: [`to_prometheus_json`], the `data` member of a Prometheus API answer.

mod aggregate;
mod binary;
mod engine;
mod eval;
mod functions;
mod json;
mod value;

#[cfg(test)]
mod tests;

pub use engine::{Engine, Storage};
pub use json::to_prometheus_json;
pub use value::{is_stale, EvalError, Labels, Sample, Series, Value, STALE_NAN_BITS};
