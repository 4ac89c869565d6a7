//! The per-step evaluator.
//!
//! Before evaluating, [`Evaluator::load`] walks the expression once, works out for every
//! selector the time window it can need over the whole query (steps, offsets, `@`, ranges,
//! subqueries, lookback) and selects it from storage once. Evaluation then walks the tree at
//! each step and only slices the loaded samples (binary search), so a range query costs one
//! `select` per selector, not one per step.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};
use regex::Regex;

use super::engine::{Engine, Storage};
use super::value::{
    drop_metric_name, execution, is_stale, not_supported, EvalError, Labels, METRIC_NAME,
};
use super::{aggregate, binary, functions};

/// Resolution of a subquery without an explicit step (`foo[1h:]`): Prometheus uses the global
/// evaluation interval, whose default is one minute.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

const DEFAULT_LOOKBACK_MS: i64 = 300_000;

/// One element of an instant vector at the current step.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub labels: Rc<Labels>,
    pub v: f64,
}

/// What an expression evaluates to at one step (range vectors are handled by
/// [`Evaluator::eval_range`]).
#[derive(Debug)]
pub(crate) enum StepValue {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
}

/// One series of a range vector at the current step: only its samples inside the range.
pub(crate) struct RangeSeries<'a> {
    pub labels: Rc<Labels>,
    /// Never empty, in time order, without staleness markers.
    pub points: Cow<'a, [(i64, f64)]>,
}

/// A range vector at the current step.
pub(crate) struct RangeArg<'a> {
    pub series: Vec<RangeSeries<'a>>,
    /// End of the range (evaluation time after `@` and `offset`); samples are in
    /// `(range_end_ms - range_ms, range_end_ms]`.
    pub range_end_ms: i64,
    pub range_ms: i64,
}

/// A series as loaded for one selector.
struct Loaded {
    labels: Rc<Labels>,
    samples: Vec<(i64, f64)>,
}

/// What to load for one selector node.
struct Plan<'x> {
    vs: &'x VectorSelector,
    start_ms: i64,
    end_ms: i64,
    /// Range selectors never see staleness markers; instant selectors need them.
    drop_stale: bool,
}

pub(crate) struct Evaluator {
    lookback_ms: i64,
    max_samples: usize,
    started: Instant,
    timeout: Duration,
    query_start_ms: i64,
    query_end_ms: i64,
    /// Loaded series per selector node, keyed by the node's address in the parsed query.
    data: HashMap<usize, Vec<Loaded>>,
    loaded: usize,
    produced: Cell<usize>,
    regexes: RefCell<HashMap<String, Rc<Regex>>>,
    /// Inner results of each subquery node by inner evaluation time. Inner times are
    /// aligned to multiples of the step, so consecutive outer steps share most of them; an
    /// expression's value at a time does not depend on the outer step.
    subqueries: RefCell<HashMap<usize, BTreeMap<i64, Rc<StepValue>>>>,
}

fn selector_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(offset: Option<&Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => duration_ms(d).saturating_neg(),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => duration_ms(&e.duration()).saturating_neg(),
    }
}

/// Removes any number of parentheses around an expression.
pub(crate) fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// Puts samples in time order and keeps the last of samples sharing a timestamp.
fn normalize_samples(samples: &mut Vec<(i64, f64)>) {
    if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
        samples.sort_by_key(|&(t, _)| t);
        // dedup_by keeps the first of a run; reverse so that it keeps the last one.
        samples.reverse();
        samples.dedup_by_key(|&mut (t, _)| t);
        samples.reverse();
    }
}

/// Prometheus fails an evaluation step whose output has two elements with the same labels
/// (typically after dropping `__name__`).
pub(crate) fn check_unique(elems: &[Elem]) -> Result<(), EvalError> {
    if elems.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(elems.len());
    for e in elems {
        if !seen.insert(e.labels.as_ref()) {
            return Err(execution(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

/// Accumulates per-step results into series, in first-seen order.
#[derive(Default)]
pub(crate) struct SeriesBuilder {
    index: HashMap<Rc<Labels>, usize>,
    series: Vec<BuiltSeries>,
}

pub(crate) struct BuiltSeries {
    pub labels: Rc<Labels>,
    pub points: Vec<(i64, f64)>,
}

impl SeriesBuilder {
    /// Adds a point; two points for the same labels at the same time are Prometheus'
    /// "same labelset" error.
    pub(crate) fn push(&mut self, labels: Rc<Labels>, t: i64, v: f64) -> Result<(), EvalError> {
        match self.index.get(labels.as_ref()) {
            Some(&i) => {
                let points = &mut self.series[i].points;
                if points.last().is_some_and(|&(last, _)| last == t) {
                    return Err(execution(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                points.push((t, v));
            }
            None => {
                self.index.insert(Rc::clone(&labels), self.series.len());
                self.series.push(BuiltSeries {
                    labels,
                    points: vec![(t, v)],
                });
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<BuiltSeries> {
        self.series
    }
}

impl Evaluator {
    pub(crate) fn new(
        engine: &Engine,
        started: Instant,
        query_start_ms: i64,
        query_end_ms: i64,
    ) -> Self {
        Evaluator {
            lookback_ms: if engine.lookback_ms > 0 {
                engine.lookback_ms
            } else {
                DEFAULT_LOOKBACK_MS
            },
            max_samples: engine.max_samples,
            started,
            timeout: engine.timeout,
            query_start_ms,
            query_end_ms,
            data: HashMap::new(),
            loaded: 0,
            produced: Cell::new(0),
            regexes: RefCell::new(HashMap::new()),
            subqueries: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn check_deadline(&self) -> Result<(), EvalError> {
        if self.started.elapsed() > self.timeout {
            Err(EvalError::Timeout(
                "query timed out in expression evaluation".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn too_many_samples() -> EvalError {
        EvalError::Limit(
            "query processing would load too many samples into memory in query execution".into(),
        )
    }

    /// Counts points that stay in the result.
    pub(crate) fn count_produced(&self, n: usize) -> Result<(), EvalError> {
        let produced = self.produced.get().saturating_add(n);
        self.produced.set(produced);
        if self.loaded.saturating_add(produced) > self.max_samples {
            return Err(Self::too_many_samples());
        }
        Ok(())
    }

    /// Checks that `n` more points held at once (a subquery's matrix) fit in the budget.
    fn check_transient(&self, n: usize) -> Result<(), EvalError> {
        if self
            .loaded
            .saturating_add(self.produced.get())
            .saturating_add(n)
            > self.max_samples
        {
            return Err(Self::too_many_samples());
        }
        Ok(())
    }

    /// A compiled regex, cached for the query (label_replace runs at every step).
    pub(crate) fn regex(&self, pattern: &str) -> Result<Rc<Regex>, regex::Error> {
        if let Some(re) = self.regexes.borrow().get(pattern) {
            return Ok(Rc::clone(re));
        }
        let re = Rc::new(Regex::new(pattern)?);
        self.regexes
            .borrow_mut()
            .insert(pattern.to_string(), Rc::clone(&re));
        Ok(re)
    }

    fn at_ms(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.query_start_ms,
            AtModifier::End => self.query_end_ms,
            AtModifier::At(t) => system_time_ms(t),
        }
    }

    /// The time a selector or subquery looks at when evaluated at `t`.
    fn effective_time(&self, at: Option<&AtModifier>, offset: Option<&Offset>, t: i64) -> i64 {
        let base = at.map_or(t, |a| self.at_ms(a));
        base.saturating_sub(offset_ms(offset))
    }

    /// The span of effective times when the node is evaluated at times in `[lo, hi]`.
    fn effective_span(
        &self,
        at: Option<&AtModifier>,
        offset: Option<&Offset>,
        lo: i64,
        hi: i64,
    ) -> (i64, i64) {
        match at {
            Some(_) => {
                let t = self.effective_time(at, offset, lo);
                (t, t)
            }
            None => {
                let off = offset_ms(offset);
                (lo.saturating_sub(off), hi.saturating_sub(off))
            }
        }
    }

    /// Loads, once, the samples every selector of `expr` needs over the whole query.
    pub(crate) fn load(&mut self, storage: &dyn Storage, expr: &Expr) -> Result<(), EvalError> {
        let mut plans = Vec::new();
        self.plan(expr, self.query_start_ms, self.query_end_ms, &mut plans);
        for plan in plans {
            self.check_deadline()?;
            let mut matchers = Vec::with_capacity(plan.vs.matchers.matchers.len() + 1);
            if let Some(name) = &plan.vs.name {
                matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
            }
            matchers.extend(plan.vs.matchers.matchers.iter().cloned());
            let found = storage
                .select(&matchers, plan.start_ms, plan.end_ms)
                .map_err(EvalError::Storage)?;
            let mut found: Vec<(Labels, Vec<(i64, f64)>)> = found
                .into_iter()
                .map(|s| {
                    let mut labels = s.labels;
                    // Prometheus has no empty label values: an empty value is no label.
                    labels.retain(|(_, v)| !v.is_empty());
                    if !labels.windows(2).all(|w| w[0].0 <= w[1].0) {
                        labels.sort();
                    }
                    (labels, s.samples)
                })
                .collect();
            // Stable: a series split into several parts keeps its parts in storage order.
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let mut series: Vec<Loaded> = Vec::with_capacity(found.len());
            for (labels, mut samples) in found {
                samples.retain(|&(t, v)| {
                    t >= plan.start_ms && t <= plan.end_ms && !(plan.drop_stale && is_stale(v))
                });
                match series.last_mut() {
                    // The same series returned in several parts: merge them.
                    Some(last) if *last.labels == labels => {
                        last.samples.append(&mut samples);
                        normalize_samples(&mut last.samples);
                    }
                    _ => {
                        normalize_samples(&mut samples);
                        series.push(Loaded {
                            labels: Rc::new(labels),
                            samples,
                        });
                    }
                }
            }
            series.retain(|s| !s.samples.is_empty());
            self.loaded = self
                .loaded
                .saturating_add(series.iter().map(|s| s.samples.len()).sum());
            if self.loaded > self.max_samples {
                return Err(Self::too_many_samples());
            }
            self.data.insert(selector_key(plan.vs), series);
        }
        self.check_deadline()
    }

    /// Collects what each selector needs when `expr` is evaluated at times in `[lo, hi]`.
    fn plan<'x>(&self, expr: &'x Expr, lo: i64, hi: i64, out: &mut Vec<Plan<'x>>) {
        match expr {
            Expr::VectorSelector(vs) => {
                let (tl, th) = self.effective_span(vs.at.as_ref(), vs.offset.as_ref(), lo, hi);
                out.push(Plan {
                    vs,
                    start_ms: tl.saturating_sub(self.lookback_ms).saturating_add(1),
                    end_ms: th,
                    drop_stale: false,
                });
            }
            Expr::MatrixSelector(ms) => {
                let (tl, th) =
                    self.effective_span(ms.vs.at.as_ref(), ms.vs.offset.as_ref(), lo, hi);
                out.push(Plan {
                    vs: &ms.vs,
                    start_ms: tl.saturating_sub(duration_ms(&ms.range)).saturating_add(1),
                    end_ms: th,
                    drop_stale: true,
                });
            }
            Expr::Subquery(sq) => {
                let (tl, th) = self.effective_span(sq.at.as_ref(), sq.offset.as_ref(), lo, hi);
                self.plan(&sq.expr, tl.saturating_sub(duration_ms(&sq.range)), th, out);
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, lo, hi, out);
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, out);
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, out),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, out);
                self.plan(&b.rhs, lo, hi, out);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn loaded_for(&self, vs: &VectorSelector) -> Result<&[Loaded], EvalError> {
        self.data
            .get(&selector_key(vs))
            .map(Vec::as_slice)
            .ok_or_else(|| execution("internal error: selector data was not loaded"))
    }

    /// Evaluates an expression of instant vector, scalar or string type at `t`.
    pub(crate) fn eval(&self, expr: &Expr, t: i64) -> Result<StepValue, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(StepValue::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepValue::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(elems) => {
                    let out: Vec<Elem> = elems
                        .into_iter()
                        .map(|e| Elem {
                            labels: drop_metric_name(&e.labels),
                            v: -e.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(StepValue::Vector(out))
                }
                StepValue::Str(_) => Err(execution(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                )),
            },
            Expr::Binary(b) => binary::eval_binary(self, b, t),
            Expr::Aggregate(a) => aggregate::eval_aggregate(self, a, t),
            Expr::Call(c) => functions::eval_call(self, c, t),
            Expr::VectorSelector(vs) => Ok(StepValue::Vector(
                self.eval_selector(vs, t)?
                    .into_iter()
                    .map(|(labels, _, v)| Elem { labels, v })
                    .collect(),
            )),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => Err(execution(
                "a range vector cannot be used here; an instant vector or scalar is expected",
            )),
            Expr::Extension(_) => Err(not_supported("extension expressions")),
        }
    }

    pub(crate) fn eval_scalar(&self, expr: &Expr, t: i64) -> Result<f64, EvalError> {
        match self.eval(expr, t)? {
            StepValue::Scalar(v) => Ok(v),
            _ => Err(execution("expected a scalar expression")),
        }
    }

    pub(crate) fn eval_vector(&self, expr: &Expr, t: i64) -> Result<Vec<Elem>, EvalError> {
        match self.eval(expr, t)? {
            StepValue::Vector(v) => Ok(v),
            _ => Err(execution("expected an instant vector expression")),
        }
    }

    pub(crate) fn eval_string(&self, expr: &Expr, t: i64) -> Result<String, EvalError> {
        match self.eval(expr, t)? {
            StepValue::Str(s) => Ok(s),
            _ => Err(execution("expected a string expression")),
        }
    }

    /// An instant selector at `t`: for each series its latest sample in
    /// `(te - lookback, te]` (te = `t` after `@` and `offset`), unless that sample is a
    /// staleness marker. Returns the labels, the sample's own timestamp and its value.
    pub(crate) fn eval_selector(
        &self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<(Rc<Labels>, i64, f64)>, EvalError> {
        let te = self.effective_time(vs.at.as_ref(), vs.offset.as_ref(), t);
        let floor = te.saturating_sub(self.lookback_ms);
        let mut out = Vec::new();
        for s in self.loaded_for(vs)? {
            let idx = s.samples.partition_point(|&(ts, _)| ts <= te);
            if idx == 0 {
                continue;
            }
            let (ts, v) = s.samples[idx - 1];
            if ts <= floor || is_stale(v) {
                continue;
            }
            out.push((Rc::clone(&s.labels), ts, v));
        }
        Ok(out)
    }

    /// Evaluates a range-vector expression (matrix selector or subquery) at `t`.
    pub(crate) fn eval_range(&self, expr: &Expr, t: i64) -> Result<RangeArg<'_>, EvalError> {
        match expr {
            Expr::Paren(p) => self.eval_range(&p.expr, t),
            Expr::MatrixSelector(ms) => {
                let te = self.effective_time(ms.vs.at.as_ref(), ms.vs.offset.as_ref(), t);
                let range_ms = duration_ms(&ms.range);
                let start = te.saturating_sub(range_ms);
                let mut series = Vec::new();
                for s in self.loaded_for(&ms.vs)? {
                    let lo = s.samples.partition_point(|&(ts, _)| ts <= start);
                    let hi = s.samples.partition_point(|&(ts, _)| ts <= te);
                    if lo < hi {
                        series.push(RangeSeries {
                            labels: Rc::clone(&s.labels),
                            points: Cow::Borrowed(&s.samples[lo..hi]),
                        });
                    }
                }
                Ok(RangeArg {
                    series,
                    range_end_ms: te,
                    range_ms,
                })
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, t),
            _ => Err(execution("expected a range vector expression")),
        }
    }

    /// `expr[range:step]` at `t`: the inner expression evaluated at every multiple of `step`
    /// in `(te - range, te]`.
    fn eval_subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<RangeArg<'static>, EvalError> {
        let te = self.effective_time(sq.at.as_ref(), sq.offset.as_ref(), t);
        let range_ms = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map_or(DEFAULT_SUBQUERY_STEP_MS, duration_ms);
        if step <= 0 {
            return Err(execution("subquery step must be positive"));
        }
        let start = te.saturating_sub(range_ms);
        // Like Prometheus: the first multiple of the step after `start` (Go's truncating division).
        let mut ti = (start / step).saturating_mul(step);
        if ti <= start {
            ti = ti.saturating_add(step);
        }

        let key = sq as *const SubqueryExpr as usize;
        if let Some(cached) = self.subqueries.borrow_mut().get_mut(&key) {
            // Outer steps only move forward: what is left of this window is not needed again.
            *cached = cached.split_off(&start.saturating_add(1));
        }
        let mut builder = SeriesBuilder::default();
        let mut points = 0usize;
        while ti <= te {
            self.check_deadline()?;
            // No borrow of the cache is held while evaluating: nested subqueries use it too.
            let cached = self
                .subqueries
                .borrow()
                .get(&key)
                .and_then(|m| m.get(&ti).cloned());
            let value = match cached {
                Some(v) => v,
                None => {
                    let v = Rc::new(self.eval(&sq.expr, ti)?);
                    self.subqueries
                        .borrow_mut()
                        .entry(key)
                        .or_default()
                        .insert(ti, Rc::clone(&v));
                    v
                }
            };
            match value.as_ref() {
                StepValue::Vector(elems) => {
                    points += elems.len();
                    for e in elems {
                        builder.push(Rc::clone(&e.labels), ti, e.v)?;
                    }
                }
                StepValue::Scalar(v) => {
                    points += 1;
                    builder.push(Rc::new(Labels::new()), ti, *v)?;
                }
                StepValue::Str(_) => {
                    return Err(execution("subquery is only allowed on instant vectors"))
                }
            }
            self.check_transient(points)?;
            match ti.checked_add(step) {
                Some(next) => ti = next,
                None => break,
            }
        }
        let series = builder
            .finish()
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.labels,
                points: Cow::Owned(s.points),
            })
            .collect();
        Ok(RangeArg {
            series,
            range_end_ms: te,
            range_ms,
        })
    }
}
