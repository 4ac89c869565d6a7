//! [`Engine`]: parses a query, checks it only uses what this module implements, loads the data
//! through a [`Storage`], and evaluates an instant or a range query.

use std::rc::Rc;
use std::time::{Duration, Instant};

use promql_parser::label::Matcher;
use promql_parser::parser::token::{T_LIMITK, T_LIMIT_RATIO};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use super::eval::{Evaluator, SeriesBuilder, StepValue};
use super::functions;
use super::value::{not_supported, EvalError, Labels, Sample, Series, Value};

/// Where the engine reads samples from. Sightline's metric store implements it.
pub trait Storage: Send + Sync {
    /// Every series matching all matchers, with its samples in [start_ms, end_ms] inclusive, in time order.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, String>;
}

/// Evaluates PromQL. Cheap to build; holds only limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// How far back an instant selector looks for the latest sample (Prometheus'
    /// `--query.lookback-delta`). Values <= 0 mean the default, 300_000.
    pub lookback_ms: i64,
    /// Upper bound on samples loaded from storage plus points produced (result points and
    /// subquery points); over it the query fails with [`EvalError::Limit`].
    pub max_samples: usize,
    /// Query time budget, checked after loading and between evaluation steps.
    pub timeout: Duration,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            lookback_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Prometheus' API refuses range queries with more points per series than this.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

impl Engine {
    /// Evaluates `query` at `time_ms` (Prometheus' `/api/v1/query`).
    pub fn instant(
        &self,
        storage: &dyn Storage,
        query: &str,
        time_ms: i64,
    ) -> Result<Value, EvalError> {
        let started = Instant::now();
        let expr = parse(query)?;
        let mut ev = Evaluator::new(self, started, time_ms, time_ms);
        ev.load(storage, &expr)?;

        if expr.value_type() == ValueType::Matrix {
            let range = ev.eval_range(&expr, time_ms)?;
            let mut series: Vec<Series> = range
                .series
                .iter()
                .map(|s| Series {
                    labels: Labels::clone(&s.labels),
                    samples: s.points.to_vec(),
                })
                .collect();
            ev.count_produced(series.iter().map(|s| s.samples.len()).sum())?;
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            return Ok(Value::Matrix(series));
        }

        match ev.eval(&expr, time_ms)? {
            StepValue::Scalar(v) => Ok(Value::Scalar { t_ms: time_ms, v }),
            StepValue::Str(v) => Ok(Value::String { t_ms: time_ms, v }),
            StepValue::Vector(elems) => {
                ev.count_produced(elems.len())?;
                Ok(Value::Vector(
                    elems
                        .into_iter()
                        .map(|e| Sample {
                            labels: Labels::clone(&e.labels),
                            t_ms: time_ms,
                            v: e.v,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Evaluates `query` at `start_ms`, `start_ms + step_ms`, ... up to `end_ms` (Prometheus'
    /// `/api/v1/query_range`). Always a [`Value::Matrix`], sorted by labels; a series keeps
    /// only the steps where it had a value.
    pub fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, EvalError> {
        let started = Instant::now();
        if step_ms <= 0 {
            return Err(EvalError::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(EvalError::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        let intervals = (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms);
        if intervals > i128::from(MAX_POINTS_PER_SERIES) {
            return Err(EvalError::Parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let expr = parse(query)?;
        let value_type = expr.value_type();
        if value_type != ValueType::Vector && value_type != ValueType::Scalar {
            return Err(EvalError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(value_type)
            )));
        }

        let mut ev = Evaluator::new(self, started, start_ms, end_ms);
        ev.load(storage, &expr)?;

        let mut builder = SeriesBuilder::default();
        // `intervals` is at most MAX_POINTS_PER_SERIES, so the cast and the multiplication are safe.
        for i in 0..=(intervals as i64) {
            let t = start_ms + i * step_ms;
            ev.check_deadline()?;
            let produced = match ev.eval(&expr, t)? {
                StepValue::Scalar(v) => {
                    builder.push(Rc::new(Labels::new()), t, v)?;
                    1
                }
                StepValue::Vector(elems) => {
                    let n = elems.len();
                    for e in elems {
                        builder.push(e.labels, t, e.v)?;
                    }
                    n
                }
                StepValue::Str(_) => {
                    return Err(EvalError::Parse(
                        "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                    ))
                }
            };
            ev.count_produced(produced)?;
        }

        let mut series: Vec<Series> = builder
            .finish()
            .into_iter()
            .map(|s| Series {
                labels: Labels::clone(&s.labels),
                samples: s.points,
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(series))
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// Parses and checks that every node is implemented here, so that nothing is evaluated
/// (or loaded) for a query that would fail later.
fn parse(query: &str) -> Result<Expr, EvalError> {
    let expr = parser::parse(query).map_err(|e| EvalError::Parse(format!("parse error: {e}")))?;
    check_supported(&expr)?;
    Ok(expr)
}

fn check_supported(expr: &Expr) -> Result<(), EvalError> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.id();
            if op == T_LIMITK || op == T_LIMIT_RATIO {
                return Err(not_supported(&format!("the {} aggregation", a.op)));
            }
            check_supported(&a.expr)?;
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err(not_supported("the fill modifier of binary operators"));
                }
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(&vs.matchers),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs.matchers),
        Expr::Call(c) => {
            if !functions::is_supported(c.func.name) {
                return Err(not_supported(&format!("function {}()", c.func.name)));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(_) => Err(not_supported("extension expressions")),
    }
}

fn check_selector(matchers: &promql_parser::label::Matchers) -> Result<(), EvalError> {
    if matchers.or_matchers.is_empty() {
        Ok(())
    } else {
        Err(not_supported("`or` between label matchers"))
    }
}
