//! PromQL functions, following Prometheus' `promql/functions.go` for float samples.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::f64::consts::{LN_10, LN_2, PI};
use std::rc::Rc;

use promql_parser::parser::{Call, Expr};

use super::eval::{check_unique, unwrap_parens, Elem, Evaluator, RangeArg, StepValue};
use super::value::{
    drop_metric_name, execution, is_valid_label_name, label_value, not_supported, remove_label,
    set_label, without_metric_name, EvalError, Labels, METRIC_NAME,
};

/// Functions this module implements; every other one answers "... is not supported".
const SUPPORTED: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "first_over_time",
    "floor",
    "histogram_quantile",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

pub(crate) fn is_supported(name: &str) -> bool {
    SUPPORTED.contains(&name)
}

fn arg<'a>(args: &[&'a Expr], i: usize, name: &str) -> Result<&'a Expr, EvalError> {
    args.get(i)
        .copied()
        .ok_or_else(|| execution(format!("missing argument {} of {name}()", i + 1)))
}

fn string_arg(args: &[&Expr], i: usize, name: &str) -> Result<String, EvalError> {
    match arg(args, i, name)? {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(execution(format!(
            "argument {} of {name}() must be a string literal",
            i + 1
        ))),
    }
}

pub(crate) fn eval_call(ev: &Evaluator, call: &Call, t: i64) -> Result<StepValue, EvalError> {
    let name = call.func.name;
    // Prometheus removes superfluous parentheses around function arguments.
    let args: Vec<&Expr> = call.args.args.iter().map(|a| unwrap_parens(a)).collect();
    let out = match name {
        "time" => return Ok(StepValue::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(StepValue::Scalar(PI)),
        "scalar" => {
            let v = ev.eval_vector(arg(&args, 0, name)?, t)?;
            return Ok(StepValue::Scalar(match v.as_slice() {
                [one] => one.v,
                _ => f64::NAN,
            }));
        }
        "vector" => vec![Elem {
            labels: Rc::new(Labels::new()),
            v: ev.eval_scalar(arg(&args, 0, name)?, t)?,
        }],
        "timestamp" => timestamp(ev, arg(&args, 0, name)?, t)?,
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos"
        | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh"
        | "atanh" | "deg" | "rad" | "sgn" => {
            let f = math_fn(name);
            map_values(ev.eval_vector(arg(&args, 0, name)?, t)?, f)
        }
        "round" => {
            let input = ev.eval_vector(arg(&args, 0, name)?, t)?;
            let to_nearest = match args.get(1) {
                Some(e) => ev.eval_scalar(e, t)?,
                None => 1.0,
            };
            // Inverted as Prometheus does: fewer floating point accuracy issues.
            let inverse = 1.0 / to_nearest;
            map_values(input, |f| (f * inverse + 0.5).floor() / inverse)
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let input = ev.eval_vector(arg(&args, 0, name)?, t)?;
            let (min, max) = match name {
                "clamp" => (
                    ev.eval_scalar(arg(&args, 1, name)?, t)?,
                    ev.eval_scalar(arg(&args, 2, name)?, t)?,
                ),
                "clamp_min" => (ev.eval_scalar(arg(&args, 1, name)?, t)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, ev.eval_scalar(arg(&args, 1, name)?, t)?),
            };
            if max < min {
                Vec::new()
            } else {
                map_values(input, |f| go_max(min, go_min(max, f)))
            }
        }
        "absent" => {
            let a = arg(&args, 0, name)?;
            if ev.eval_vector(a, t)?.is_empty() {
                vec![Elem {
                    labels: Rc::new(absent_labels(a)),
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "sort" | "sort_desc" => {
            let mut input = ev.eval_vector(arg(&args, 0, name)?, t)?;
            let desc = name == "sort_desc";
            input.sort_by(|a, b| sort_order(a.v, b.v, desc));
            return Ok(StepValue::Vector(input));
        }
        "label_replace" => label_replace(ev, &args, t)?,
        "label_join" => label_join(ev, &args, t)?,
        "histogram_quantile" => histogram_quantile(ev, &args, t)?,
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => date_fn(ev, name, &args, t)?,
        _ if name.ends_with("_over_time")
            || matches!(
                name,
                "rate"
                    | "irate"
                    | "increase"
                    | "delta"
                    | "idelta"
                    | "deriv"
                    | "predict_linear"
                    | "resets"
                    | "changes"
            ) =>
        {
            range_fn(ev, name, &args, t)?
        }
        _ => return Err(not_supported(&format!("function {name}()"))),
    };
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// Applies `f` to every value and drops the metric name (Prometheus' `simpleFloatFunc`).
fn map_values(input: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    input
        .into_iter()
        .map(|e| Elem {
            labels: drop_metric_name(&e.labels),
            v: f(e.v),
        })
        .collect()
}

fn math_fn(name: &str) -> fn(f64) -> f64 {
    match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => go_log2,
        "log10" => go_log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / PI,
        "rad" => |v| v * PI / 180.0,
        _ => sgn, // "sgn"
    }
}

fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// Go's `math.Frexp`: `v = frac * 2^exp` with `frac` in [0.5, 1).
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let (mut v, mut exp) = (v, 0);
    if v.abs() < f64::MIN_POSITIVE {
        // Subnormal: normalise first.
        v *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = v.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Go's `math.Log2` (exact for powers of two).
fn go_log2(v: f64) -> f64 {
    let (frac, exp) = frexp(v);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    frac.ln() * (1.0 / LN_2) + f64::from(exp)
}

/// Go's `math.Log10`.
fn go_log10(v: f64) -> f64 {
    go_log2(v) * (LN_2 / LN_10)
}

/// Go's `math.Max` (NaN wins, except against +Inf).
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min` (NaN wins, except against -Inf).
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// `sort()`: ascending; `sort_desc()`: descending; NaN last in both.
fn sort_order(a: f64, b: f64, desc: bool) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Order of Prometheus' `vectorByValueHeap`: NaN first, then ascending.
fn nan_first_order(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(nan_first_order);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Neumaier's improved Kahan summation step (Prometheus' `kahansum.Inc`).
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn timestamp(ev: &Evaluator, a: &Expr, t: i64) -> Result<Vec<Elem>, EvalError> {
    // On a selector, timestamp() returns the samples' own timestamps; on anything else the
    // evaluation time, as in Prometheus.
    if let Expr::VectorSelector(vs) = a {
        return Ok(ev
            .eval_selector(vs, t)?
            .into_iter()
            .map(|(labels, ts, _)| Elem {
                labels: drop_metric_name(&labels),
                v: ts as f64 / 1000.0,
            })
            .collect());
    }
    Ok(ev
        .eval_vector(a, t)?
        .into_iter()
        .map(|e| Elem {
            labels: drop_metric_name(&e.labels),
            v: t as f64 / 1000.0,
        })
        .collect())
}

/// Labels of `absent()` / `absent_over_time()`: the equality matchers of a selector argument
/// (a label matched twice is left out), none for any other argument.
fn absent_labels(a: &Expr) -> Labels {
    let matchers = match a {
        Expr::VectorSelector(vs) => &vs.matchers.matchers,
        Expr::MatrixSelector(ms) => &ms.vs.matchers.matchers,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let first = !seen.contains(&m.name.as_str());
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && first {
            set_label(&mut out, &m.name, &m.value);
            seen.push(&m.name);
        } else {
            remove_label(&mut out, &m.name);
        }
    }
    out
}

fn label_replace(ev: &Evaluator, args: &[&Expr], t: i64) -> Result<Vec<Elem>, EvalError> {
    let name = "label_replace";
    let dst = string_arg(args, 1, name)?;
    let replacement = string_arg(args, 2, name)?;
    let src = string_arg(args, 3, name)?;
    let pattern = string_arg(args, 4, name)?;
    let re = ev.regex(&format!("^(?s:{pattern})$")).map_err(|_| {
        execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let input = ev.eval_vector(arg(args, 0, name)?, t)?;
    let mut cache: HashMap<Rc<Labels>, Rc<Labels>> = HashMap::new();
    let mut out = Vec::with_capacity(input.len());
    for e in input {
        if let Some(l) = cache.get(&e.labels) {
            out.push(Elem {
                labels: Rc::clone(l),
                v: e.v,
            });
            continue;
        }
        let src_value = label_value(&e.labels, &src).unwrap_or("");
        let labels = match re.captures(src_value) {
            // No match: the series is left unchanged.
            None => Rc::clone(&e.labels),
            Some(caps) => {
                let mut value = String::new();
                caps.expand(&replacement, &mut value);
                let mut l = Labels::clone(&e.labels);
                set_label(&mut l, &dst, &value);
                Rc::new(l)
            }
        };
        cache.insert(Rc::clone(&e.labels), Rc::clone(&labels));
        out.push(Elem { labels, v: e.v });
    }
    Ok(out)
}

fn label_join(ev: &Evaluator, args: &[&Expr], t: i64) -> Result<Vec<Elem>, EvalError> {
    let name = "label_join";
    let dst = string_arg(args, 1, name)?;
    let separator = string_arg(args, 2, name)?;
    let mut sources = Vec::new();
    for i in 3..args.len() {
        let src = string_arg(args, i, name)?;
        if !is_valid_label_name(&src) {
            return Err(execution(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        sources.push(src);
    }
    if !is_valid_label_name(&dst) {
        return Err(execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let input = ev.eval_vector(arg(args, 0, name)?, t)?;
    Ok(input
        .into_iter()
        .map(|e| {
            let joined = sources
                .iter()
                .map(|s| label_value(&e.labels, s).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&separator);
            let mut l = Labels::clone(&e.labels);
            set_label(&mut l, &dst, &joined);
            Elem {
                labels: Rc::new(l),
                v: e.v,
            }
        })
        .collect())
}

/// Go's `strconv.ParseFloat` for an `le` label: like Rust's parser, but an overflow to
/// infinity is an error.
fn parse_bucket_bound(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return None;
    }
    Some(v)
}

fn histogram_quantile(ev: &Evaluator, args: &[&Expr], t: i64) -> Result<Vec<Elem>, EvalError> {
    let name = "histogram_quantile";
    let q = ev.eval_scalar(arg(args, 0, name)?, t)?;
    let input = ev.eval_vector(arg(args, 1, name)?, t)?;
    // Buckets are grouped by all labels but `le` (the metric name included, so two
    // histograms never mix); the output drops `le` and the metric name.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for e in &input {
        let Some(upper) = label_value(&e.labels, "le").and_then(parse_bucket_bound) else {
            continue;
        };
        let mut key = Labels::clone(&e.labels);
        remove_label(&mut key, "le");
        match index.get(&key) {
            Some(&i) => groups[i].1.push((upper, e.v)),
            None => {
                let out_labels = without_metric_name(&key);
                index.insert(key, groups.len());
                groups.push((out_labels, vec![(upper, e.v)]));
            }
        }
    }
    Ok(groups
        .into_iter()
        .map(|(labels, mut buckets)| Elem {
            labels: Rc::new(labels),
            v: bucket_quantile(q, &mut buckets),
        })
        .collect())
}

/// Go's `sort.Search`: the smallest index in `[0, n)` where `f` is true, or `n`.
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = i + (j - i) / 2;
        if !f(h) {
            i = h + 1;
        } else {
            j = h;
        }
    }
    i
}

/// Prometheus' `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus' `BucketQuantile` for classic histograms: `buckets` are `(upper bound,
/// cumulative count)`.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    buckets.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
    ensure_monotonic_and_ignore_small_deltas(buckets, 1e-12);

    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = go_search(buckets.len() - 1, |i| buckets[i].1 >= rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Forces cumulative counts to be monotonic and irons out floating point noise.
fn ensure_monotonic_and_ignore_small_deltas(buckets: &mut [(f64, f64)], tolerance: f64) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut prev = first.1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) || curr < prev {
            // Keep `prev`: the difference is noise, or a decrease that cannot be.
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
}

fn date_fn(ev: &Evaluator, name: &str, args: &[&Expr], t: i64) -> Result<Vec<Elem>, EvalError> {
    let f = |secs: f64| -> f64 {
        if !secs.is_finite() {
            return f64::NAN;
        }
        // Go's int64(f) truncates toward zero.
        date_part(name, secs as i64)
    };
    match args.first() {
        // Without an argument: the evaluation time (Go's integer division truncates).
        None => Ok(vec![Elem {
            labels: Rc::new(Labels::new()),
            v: date_part(name, t / 1000),
        }]),
        Some(a) => Ok(map_values(ev.eval_vector(a, t)?, f)),
    }
}

/// Converts days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date_part(name: &str, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let v = match name {
        "minute" => second_of_day % 3600 / 60,
        "hour" => second_of_day / 3600,
        // 1970-01-01 was a Thursday; Sunday is 0.
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_month" => day,
        "day_of_year" => (1..month).map(|m| days_in_month(year, m)).sum::<i64>() + day,
        "days_in_month" => days_in_month(year, month),
        "month" => month,
        _ => year, // "year"
    };
    v as f64
}

fn seconds_between(later: i64, earlier: i64) -> f64 {
    (i128::from(later) - i128::from(earlier)) as f64 / 1000.0
}

/// Prometheus' `extrapolatedRate` for `rate`, `increase` and `delta`.
fn extrapolated_rate(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        for w in points.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut duration_to_start = seconds_between(first_t, range_start);
    let mut duration_to_end = seconds_between(range_end, last_t);
    let sampled_interval = seconds_between(last_t, first_t);
    let average_between_samples = sampled_interval / (points.len() - 1) as f64;

    // Extrapolate to a boundary only when the first/last sample is within 110% of the
    // average interval from it; otherwise by half an interval.
    let threshold = average_between_samples * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past its zero point.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between_samples / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus' `instantValue` for `irate` and `idelta`: the last two samples.
fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let [.., (t0, v0), (t1, v1)] = *points else {
        return None;
    };
    let interval = seconds_between(t1, t0);
    if interval == 0.0 {
        return None;
    }
    let mut result = if is_rate && v1 < v0 { v1 } else { v1 - v0 };
    if is_rate {
        result /= interval;
    }
    Some(result)
}

/// Prometheus' `linearRegression`: slope per second and the intercept at `intercept_time`.
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init_y = points[0].1;
    let mut const_y = true;
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(ts, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = seconds_between(ts, intercept_time);
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn avg_over_time(points: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (points[0].1, 1.0);
    let (mut mean, mut kahan_c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, f)) in points.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (s, c) = kahan_sum_inc(f, sum, kahan_c);
            if !s.is_infinite() {
                (sum, kahan_c) = (s, c);
                continue;
            }
            // The sum would overflow: continue with the incremental mean.
            incremental = true;
            mean = sum / (count - 1.0);
            kahan_c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, kahan_c) = kahan_sum_inc(f / count, q * mean, q * kahan_c);
    }
    if incremental {
        mean + kahan_c
    } else {
        sum / count + kahan_c / count
    }
}

fn variance_over_time(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in points {
        count += 1.0;
        let delta = f - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn range_fn(ev: &Evaluator, name: &str, args: &[&Expr], t: i64) -> Result<Vec<Elem>, EvalError> {
    let (matrix_index, param) = match name {
        "quantile_over_time" => (1, Some(ev.eval_scalar(arg(args, 0, name)?, t)?)),
        "predict_linear" => (0, Some(ev.eval_scalar(arg(args, 1, name)?, t)?)),
        _ => (0, None),
    };
    let matrix_expr = arg(args, matrix_index, name)?;
    let RangeArg {
        series,
        range_end_ms,
        range_ms,
    } = ev.eval_range(matrix_expr, t)?;

    if name == "absent_over_time" {
        return Ok(if series.is_empty() {
            vec![Elem {
                labels: Rc::new(absent_labels(matrix_expr)),
                v: 1.0,
            }]
        } else {
            Vec::new()
        });
    }

    let range_start = range_end_ms.saturating_sub(range_ms);
    // last_over_time and first_over_time act like offset and keep the metric name.
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::with_capacity(series.len());
    for s in &series {
        let p: &[(i64, f64)] = &s.points;
        let value = match name {
            "rate" => extrapolated_rate(p, range_start, range_end_ms, range_ms, true, true),
            "increase" => extrapolated_rate(p, range_start, range_end_ms, range_ms, true, false),
            "delta" => extrapolated_rate(p, range_start, range_end_ms, range_ms, false, false),
            "irate" => instant_value(p, true),
            "idelta" => instant_value(p, false),
            "deriv" if p.len() >= 2 => Some(linear_regression(p, p[0].0).0),
            "predict_linear" if p.len() >= 2 => {
                let (slope, intercept) = linear_regression(p, t);
                Some(slope * param.unwrap_or(f64::NAN) + intercept)
            }
            "deriv" | "predict_linear" => None,
            "resets" => Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            "changes" => Some(
                p.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            "avg_over_time" => Some(avg_over_time(p)),
            "count_over_time" => Some(p.len() as f64),
            "sum_over_time" => {
                let (mut sum, mut c) = (0.0, 0.0);
                for &(_, f) in p {
                    (sum, c) = kahan_sum_inc(f, sum, c);
                }
                Some(if sum.is_infinite() { sum } else { sum + c })
            }
            "min_over_time" => {
                Some(p.iter().fold(
                    p[0].1,
                    |min, &(_, f)| {
                        if f < min || min.is_nan() {
                            f
                        } else {
                            min
                        }
                    },
                ))
            }
            "max_over_time" => {
                Some(p.iter().fold(
                    p[0].1,
                    |max, &(_, f)| {
                        if f > max || max.is_nan() {
                            f
                        } else {
                            max
                        }
                    },
                ))
            }
            "last_over_time" => Some(p[p.len() - 1].1),
            "first_over_time" => Some(p[0].1),
            "present_over_time" => Some(1.0),
            "stdvar_over_time" => Some(variance_over_time(p)),
            "stddev_over_time" => Some(variance_over_time(p).sqrt()),
            "quantile_over_time" => {
                let mut values: Vec<f64> = p.iter().map(|&(_, f)| f).collect();
                Some(quantile(param.unwrap_or(f64::NAN), &mut values))
            }
            _ => return Err(not_supported(&format!("function {name}()"))),
        };
        if let Some(v) = value {
            let labels = if keep_name {
                Rc::clone(&s.labels)
            } else {
                drop_metric_name(&s.labels)
            };
            out.push(Elem { labels, v });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_math_helpers() {
        assert_eq!(go_log2(8.0), 3.0); // exact for powers of two, like Go
        assert_eq!(go_log2(0.0), f64::NEG_INFINITY);
        assert!(go_log2(-1.0).is_nan());
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_min(2.0, 1.0), 1.0);
    }

    #[test]
    fn quantile_interpolates() {
        // rank = 0.5 * (4 - 1) = 1.5 -> between 2 and 3 -> 2.5
        assert_eq!(quantile(0.5, &mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(quantile(-0.1, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, &mut [1.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn dates() {
        // 2024-02-29T13:45:00Z = 1709214300: a Thursday, day 60 of a leap year.
        let t = 1_709_214_300;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
        // 1969-12-31T23:59:59Z: a Wednesday.
        assert_eq!(date_part("year", -1), 1969.0);
        assert_eq!(date_part("day_of_week", -1), 3.0);
        assert_eq!(date_part("minute", -1), 59.0);
    }
}
