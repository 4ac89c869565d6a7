//! Engine tests against an in-memory storage. Every expected value is worked out by hand from
//! Prometheus' documented semantics; the working is in the comment next to the assertion.

use std::sync::atomic::{AtomicUsize, Ordering};

use promql_parser::label::Matcher;

use super::*;

const S: i64 = 1000; // one second in ms

struct MemStorage {
    series: Vec<Series>,
    selects: AtomicUsize,
}

impl Storage for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, String> {
        self.selects.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .series
            .iter()
            .filter(|s| {
                matchers.iter().all(|m| {
                    let v = s
                        .labels
                        .iter()
                        .find(|(n, _)| *n == m.name)
                        .map_or("", |(_, v)| v.as_str());
                    m.is_match(v)
                })
            })
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t >= start_ms && t <= end_ms)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

struct FailingStorage;

impl Storage for FailingStorage {
    fn select(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Series>, String> {
        Err("disk on fire".into())
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

fn series(name: &str, pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut all = pairs.to_vec();
    all.push(("__name__", name));
    Series {
        labels: labels(&all),
        samples: samples.to_vec(),
    }
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn storage() -> MemStorage {
    let mut all = vec![
        // A counter growing by 10 every 15s: value(t) = 100 + 10 * t/15s, t = 0..600s.
        series(
            "http_requests_total",
            &[("job", "api"), ("instance", "a")],
            &(0..=40)
                .map(|i| (i * 15 * S, 100.0 + 10.0 * i as f64))
                .collect::<Vec<_>>(),
        ),
        // A counter that starts late inside a 2m range.
        series(
            "late_total",
            &[("job", "late")],
            &[
                (255 * S, 5.0),
                (270 * S, 10.0),
                (285 * S, 15.0),
                (300 * S, 20.0),
            ],
        ),
        // Same, but close to its zero point.
        series(
            "zero_total",
            &[("job", "zero")],
            &[
                (255 * S, 1.0),
                (270 * S, 6.0),
                (285 * S, 11.0),
                (300 * S, 16.0),
            ],
        ),
        // A counter reset between 15s and 30s.
        series(
            "reset_total",
            &[("job", "reset")],
            &[
                (0, 10.0),
                (15 * S, 20.0),
                (30 * S, 5.0),
                (45 * S, 15.0),
                (60 * S, 25.0),
            ],
        ),
        // A classic histogram with 3 buckets.
        series(
            "req_seconds_bucket",
            &[("job", "api"), ("le", "0.1")],
            &[(0, 10.0)],
        ),
        series(
            "req_seconds_bucket",
            &[("job", "api"), ("le", "0.5")],
            &[(0, 30.0)],
        ),
        series(
            "req_seconds_bucket",
            &[("job", "api"), ("le", "+Inf")],
            &[(0, 40.0)],
        ),
        // A histogram whose cumulative counts decrease (le=0.2 < le=0.1).
        series("bad_bucket", &[("le", "0.1")], &[(0, 10.0)]),
        series("bad_bucket", &[("le", "0.2")], &[(0, 5.0)]),
        series("bad_bucket", &[("le", "0.5")], &[(0, 30.0)]),
        series("bad_bucket", &[("le", "+Inf")], &[(0, 40.0)]),
        // A histogram without the +Inf bucket.
        series("noinf_bucket", &[("le", "0.1")], &[(0, 1.0)]),
        series("noinf_bucket", &[("le", "1")], &[(0, 2.0)]),
        // Gauges for aggregations and operators.
        series(
            "cpu",
            &[("instance", "a"), ("job", "x"), ("mode", "user")],
            &[(0, 1.0)],
        ),
        series(
            "cpu",
            &[("instance", "b"), ("job", "x"), ("mode", "user")],
            &[(0, 2.0)],
        ),
        series(
            "cpu",
            &[("instance", "a"), ("job", "y"), ("mode", "sys")],
            &[(0, 4.0)],
        ),
        series(
            "requests",
            &[("instance", "a"), ("job", "x"), ("method", "GET")],
            &[(0, 10.0)],
        ),
        series(
            "requests",
            &[("instance", "a"), ("job", "x"), ("method", "POST")],
            &[(0, 20.0)],
        ),
        series(
            "info",
            &[("instance", "a"), ("version", "1.2")],
            &[(0, 1.0)],
        ),
        // Lookback and staleness.
        series("g", &[], &[(0, 1.0), (60 * S, 2.0)]),
        series("st", &[], &[(0, 1.0), (30 * S, stale())]),
        // Two metrics that collide once the metric name is dropped.
        series("dup_a", &[("x", "1")], &[(0, 1.0), (15 * S, 2.0)]),
        series("dup_b", &[("x", "1")], &[(0, 1.0), (15 * S, 3.0)]),
    ];
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    MemStorage {
        series: all,
        selects: AtomicUsize::new(0),
    }
}

fn instant(q: &str, t_ms: i64) -> Result<Value, EvalError> {
    Engine::default().instant(&storage(), q, t_ms)
}

/// The (labels, value) pairs of an instant vector result, in result order.
fn vector(q: &str, t_ms: i64) -> Vec<(Labels, f64)> {
    match instant(q, t_ms) {
        Ok(Value::Vector(v)) => v
            .into_iter()
            .map(|s| {
                assert_eq!(s.t_ms, t_ms, "vector samples carry the evaluation time");
                (s.labels, s.v)
            })
            .collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

/// The value of a single-element vector result.
fn one(q: &str, t_ms: i64) -> f64 {
    let v = vector(q, t_ms);
    assert_eq!(v.len(), 1, "{q}: expected one element, got {v:?}");
    v[0].1
}

fn scalar(q: &str, t_ms: i64) -> f64 {
    match instant(q, t_ms) {
        Ok(Value::Scalar { v, .. }) => v,
        other => panic!("{q}: expected a scalar, got {other:?}"),
    }
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected}"
    );
}

fn exec_err(q: &str, t_ms: i64) -> String {
    match instant(q, t_ms) {
        Err(EvalError::Execution(m)) => m,
        other => panic!("{q}: expected an execution error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- rate family

#[test]
fn rate_and_increase_extrapolate_on_a_regular_series() {
    // Window (240s, 300s]: samples at 255, 270, 285, 300 with values 270, 280, 290, 300.
    // increase = 300 - 270 = 30 over the sampled 45s. The first sample is 15s after the
    // range start, less than 1.1 * the 15s average interval: extrapolate to the start.
    // The last sample is at the range end. Zero point: 45s * 270/30 = 405s, far away.
    // increase = 30 * (45 + 15 + 0) / 45 = 40; rate = 40 / 60s.
    assert_close(
        one("increase(http_requests_total[1m])", 300 * S),
        40.0,
        "increase",
    );
    assert_close(
        one("rate(http_requests_total[1m])", 300 * S),
        40.0 / 60.0,
        "rate",
    );
    // delta (not a counter) extrapolates the same way here: 30 * 60/45 = 40.
    assert_close(
        one("delta(http_requests_total[1m])", 300 * S),
        40.0,
        "delta",
    );
    // The metric name is dropped, the other labels are kept.
    let v = vector("rate(http_requests_total[1m])", 300 * S);
    assert_eq!(v[0].0, labels(&[("instance", "a"), ("job", "api")]));
}

#[test]
fn rate_extrapolates_half_an_interval_when_the_series_starts_late() {
    // Window (180s, 300s]: samples 5, 10, 15, 20 at 255..300s. increase = 15 over 45s.
    // The first sample is 75s after the range start, >= 1.1 * 15s: extrapolate only half
    // an interval, 7.5s. Zero point: 45s * 5/15 = 15s, not shorter than 7.5s.
    // increase = 15 * (45 + 7.5 + 0) / 45 = 17.5.
    assert_close(
        one("increase(late_total[2m])", 300 * S),
        17.5,
        "late increase",
    );
    // rate = 17.5 / 120s.
    assert_close(
        one("rate(late_total[2m])", 300 * S),
        17.5 / 120.0,
        "late rate",
    );
    // Values 1, 6, 11, 16: zero point 45s * 1/15 = 3s, shorter than 7.5s, so the counter
    // is extrapolated to its zero point only: 15 * (45 + 3) / 45 = 16.
    assert_close(one("increase(zero_total[2m])", 300 * S), 16.0, "zero point");
}

#[test]
fn rate_corrects_a_counter_reset() {
    // Window (0, 60s] (left-open: the sample at 0 is out): 20, 5, 15, 25 at 15..60s.
    // 5 < 20 is a reset, so add 20: increase = (25 - 20) + 20 = 25 over 45s.
    // First sample 15s after the start (< 16.5s): extrapolate to the start; zero point
    // 45s * 20/25 = 36s is further. increase = 25 * (45 + 15) / 45 = 33.33...
    assert_close(
        one("increase(reset_total[1m])", 60 * S),
        100.0 / 3.0,
        "increase",
    );
    // rate = 33.33... / 60s = 0.5555...
    assert_close(
        one("rate(reset_total[1m])", 60 * S),
        100.0 / 3.0 / 60.0,
        "rate",
    );
    // resets: one decrease (20 -> 5); changes: 20->5, 5->15, 15->25 = 3.
    assert_eq!(one("resets(reset_total[1m])", 60 * S), 1.0);
    assert_eq!(one("changes(reset_total[1m])", 60 * S), 3.0);
}

#[test]
fn rate_needs_two_samples() {
    // Window (250s, 310s] holds 255..300s of late_total, but (300s, 360s] holds nothing.
    assert!(vector("rate(late_total[1m])", 360 * S).is_empty());
    // (285s, 345s] holds only the sample at 300s.
    assert!(vector("rate(late_total[1m])", 345 * S).is_empty());
}

#[test]
fn irate_uses_the_last_two_samples() {
    // At 60s: last two samples (45s, 15) and (60s, 25): (25 - 15) / 15s.
    assert_close(one("irate(reset_total[1m])", 60 * S), 10.0 / 15.0, "irate");
    // At 30s: window (-30s, 30s], last two (15s, 20) and (30s, 5): a reset, so the
    // increase is the last value, 5: 5 / 15s.
    assert_close(
        one("irate(reset_total[1m])", 30 * S),
        5.0 / 15.0,
        "irate reset",
    );
    // idelta does not treat the decrease as a reset: 5 - 20 = -15.
    assert_eq!(one("idelta(reset_total[1m])", 30 * S), -15.0);
}

#[test]
fn deriv_and_predict_linear() {
    // Values grow exactly 10 per 15s: least-squares slope 10/15 per second.
    assert_close(
        one("deriv(http_requests_total[1m])", 300 * S),
        10.0 / 15.0,
        "deriv",
    );
    // Line through (300s, 300) with slope 2/3: 60s later it reaches 300 + 40 = 340.
    assert_close(
        one("predict_linear(http_requests_total[1m], 60)", 300 * S),
        340.0,
        "predict_linear",
    );
}

#[test]
fn over_time_functions() {
    // Window (240s, 300s] of http_requests_total: 270, 280, 290, 300.
    let t = 300 * S;
    assert_eq!(one("sum_over_time(http_requests_total[1m])", t), 1140.0);
    assert_eq!(one("avg_over_time(http_requests_total[1m])", t), 285.0);
    assert_eq!(one("count_over_time(http_requests_total[1m])", t), 4.0);
    assert_eq!(one("min_over_time(http_requests_total[1m])", t), 270.0);
    assert_eq!(one("max_over_time(http_requests_total[1m])", t), 300.0);
    assert_eq!(one("present_over_time(http_requests_total[1m])", t), 1.0);
    // Deviations from 285: -15, -5, 5, 15 -> variance (225 + 25 + 25 + 225) / 4 = 125.
    assert_close(
        one("stdvar_over_time(http_requests_total[1m])", t),
        125.0,
        "stdvar",
    );
    assert_close(
        one("stddev_over_time(http_requests_total[1m])", t),
        125f64.sqrt(),
        "stddev",
    );
    // rank 0.5 * 3 = 1.5: halfway between 280 and 290.
    assert_eq!(
        one("quantile_over_time(0.5, http_requests_total[1m])", t),
        285.0
    );
    // last_over_time keeps the metric name; the others drop it.
    let last = vector("last_over_time(http_requests_total[1m])", t);
    assert_eq!(last[0].1, 300.0);
    assert_eq!(label(&last[0].0, "__name__"), Some("http_requests_total"));
    let max = vector("max_over_time(http_requests_total[1m])", t);
    assert_eq!(label(&max[0].0, "__name__"), None);
}

fn label<'a>(l: &'a Labels, name: &str) -> Option<&'a str> {
    l.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------- histogram_quantile

#[test]
fn histogram_quantile_interpolates_in_classic_buckets() {
    let t = 10 * S;
    // Buckets 0.1: 10, 0.5: 30, +Inf: 40. q=0.5: rank 20 falls in (0.1, 0.5] which holds
    // 20 observations, 10 of them below the rank: 0.1 + (0.5 - 0.1) * 10/20 = 0.3.
    let v = vector("histogram_quantile(0.5, req_seconds_bucket)", t);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, labels(&[("job", "api")]), "le and __name__ dropped");
    assert_close(v[0].1, 0.3, "q=0.5");
    // q=0.1: rank 4 in the first bucket, interpolated from 0: 0.1 * 4/10 = 0.04.
    assert_close(
        one("histogram_quantile(0.1, req_seconds_bucket)", t),
        0.04,
        "q=0.1",
    );
    // q=0.9: rank 36 falls in the +Inf bucket: the highest finite bound, 0.5.
    assert_eq!(one("histogram_quantile(0.9, req_seconds_bucket)", t), 0.5);
    // q > 1: +Inf; q < 0: -Inf; q = NaN: NaN.
    assert_eq!(
        one("histogram_quantile(1.5, req_seconds_bucket)", t),
        f64::INFINITY
    );
    assert_eq!(
        one("histogram_quantile(-1, req_seconds_bucket)", t),
        f64::NEG_INFINITY
    );
    assert!(one("histogram_quantile(NaN, req_seconds_bucket)", t).is_nan());
}

#[test]
fn histogram_quantile_fixes_monotonicity_and_needs_inf() {
    let t = 10 * S;
    // Counts 10, 5, 30, 40 become 10, 10, 30, 40. q=0.5: rank 20 in (0.2, 0.5] which holds
    // 30 - 10 = 20, 10 below the rank: 0.2 + 0.3 * 10/20 = 0.35 (0.38 without the fix).
    assert_close(
        one("histogram_quantile(0.5, bad_bucket)", t),
        0.35,
        "monotonic",
    );
    // Without a +Inf bucket the quantile is NaN.
    assert!(one("histogram_quantile(0.5, noinf_bucket)", t).is_nan());
}

// ---------------------------------------------------------------- aggregations

#[test]
fn sum_by_and_without() {
    let t = 10 * S;
    // cpu: {a,x,user} 1, {b,x,user} 2, {a,y,sys} 4.
    assert_eq!(
        vector("sum by (job) (cpu)", t),
        vec![
            (labels(&[("job", "x")]), 3.0),
            (labels(&[("job", "y")]), 4.0)
        ]
    );
    // without drops the listed labels and __name__.
    assert_eq!(
        vector("sum without (instance) (cpu)", t),
        vec![
            (labels(&[("job", "x"), ("mode", "user")]), 3.0),
            (labels(&[("job", "y"), ("mode", "sys")]), 4.0),
        ]
    );
    assert_eq!(vector("sum(cpu)", t), vec![(Labels::new(), 7.0)]);
    assert_close(one("avg(cpu)", t), 7.0 / 3.0, "avg");
    assert_eq!(one("count(cpu)", t), 3.0);
    assert_eq!(one("min(cpu)", t), 1.0);
    assert_eq!(one("max(cpu)", t), 4.0);
    assert_eq!(one("group(cpu)", t), 1.0);
    // Mean 7/3; squared deviations 16/9, 1/9, 25/9; variance 42/27 = 14/9.
    assert_close(one("stdvar(cpu)", t), 14.0 / 9.0, "stdvar");
    assert_close(one("stddev(cpu)", t), (14.0f64 / 9.0).sqrt(), "stddev");
    // Sorted 1, 2, 4: rank 0.5 * 2 = 1 -> 2.
    assert_eq!(one("quantile(0.5, cpu)", t), 2.0);
}

#[test]
fn topk_and_bottomk_keep_the_series_labels() {
    let t = 10 * S;
    let cpu = |pairs: &[(&str, &str)]| {
        let mut all = pairs.to_vec();
        all.push(("__name__", "cpu"));
        labels(&all)
    };
    // The two largest, largest first, with all their labels.
    assert_eq!(
        vector("topk(2, cpu)", t),
        vec![
            (
                cpu(&[("instance", "a"), ("job", "y"), ("mode", "sys")]),
                4.0
            ),
            (
                cpu(&[("instance", "b"), ("job", "x"), ("mode", "user")]),
                2.0
            ),
        ]
    );
    assert_eq!(
        vector("bottomk(1, cpu)", t),
        vec![(
            cpu(&[("instance", "a"), ("job", "x"), ("mode", "user")]),
            1.0
        )]
    );
    // Per job: x -> 2 (instance b), y -> 4.
    let per_job: Vec<f64> = vector("topk by (job) (1, cpu)", t)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(per_job, vec![2.0, 4.0]);
    assert!(vector("topk(0, cpu)", t).is_empty());
    assert_eq!(exec_err("topk(NaN, cpu)", t), "Parameter value is NaN");
}

#[test]
fn count_values_counts_by_value() {
    // Each value appears once.
    assert_eq!(
        vector("count_values(\"value\", cpu)", 10 * S),
        vec![
            (labels(&[("value", "1")]), 1.0),
            (labels(&[("value", "4")]), 1.0),
            (labels(&[("value", "2")]), 1.0),
        ]
    );
}

// ---------------------------------------------------------------- binary operators

#[test]
fn group_left_copies_labels_from_the_one_side() {
    let t = 10 * S;
    // Each request series matches info on instance="a"; version comes from info, the
    // metric name is dropped by the multiplication.
    assert_eq!(
        vector("requests * on(instance) group_left(version) info", t),
        vec![
            (
                labels(&[
                    ("instance", "a"),
                    ("job", "x"),
                    ("method", "GET"),
                    ("version", "1.2")
                ]),
                10.0
            ),
            (
                labels(&[
                    ("instance", "a"),
                    ("job", "x"),
                    ("method", "POST"),
                    ("version", "1.2")
                ]),
                20.0
            ),
        ]
    );
    // group_right: the many side is on the right; the value is still lhs * rhs.
    assert_eq!(
        vector("info * on(instance) group_right(version) requests", t)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        vec![10.0, 20.0]
    );
    // One-to-one with on(): only the matching labels remain.
    assert_eq!(
        vector("requests{method=\"GET\"} / on(instance) info", t),
        vec![(labels(&[("instance", "a")]), 10.0)]
    );
    // Default matching ignores only __name__.
    assert_eq!(
        vector("requests / requests", t),
        vec![
            (
                labels(&[("instance", "a"), ("job", "x"), ("method", "GET")]),
                1.0
            ),
            (
                labels(&[("instance", "a"), ("job", "x"), ("method", "POST")]),
                1.0
            ),
        ]
    );
    // Vector-scalar arithmetic drops the name too.
    assert_eq!(
        vector("info * 2 + 1", t),
        vec![(labels(&[("instance", "a"), ("version", "1.2")]), 3.0)]
    );
    assert_eq!(scalar("2 ^ 3 % 5", t), 3.0); // (2^3) % 5 = 8 % 5
}

#[test]
fn duplicate_matches_are_errors_worded_like_prometheus() {
    let t = 10 * S;
    // Two request series share instance="a" on the left of a one-to-one match.
    assert_eq!(
        exec_err("requests / on(instance) info", t),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
    // On the right ("one") side the duplicate is reported with both series.
    assert_eq!(
        exec_err("info / on(instance) requests", t),
        "found duplicate series for the match group {instance=\"a\"} on the right hand-side of the operation: \
[{__name__=\"requests\", instance=\"a\", job=\"x\", method=\"POST\"}, \
{__name__=\"requests\", instance=\"a\", job=\"x\", method=\"GET\"}];\
many-to-many matching not allowed: matching labels must be unique on one side"
    );
    // Dropping the metric name makes dup_a{x="1"} and dup_b{x="1"} collide.
    assert_eq!(
        exec_err("rate({__name__=~\"dup_a|dup_b\"}[1m])", 15 * S),
        "vector cannot contain metrics with the same labelset"
    );
}

#[test]
fn comparison_filters_unless_bool() {
    let t = 10 * S;
    let cpu = |pairs: &[(&str, &str)]| {
        let mut all = pairs.to_vec();
        all.push(("__name__", "cpu"));
        labels(&all)
    };
    // Filtering keeps the matching samples with their value and metric name.
    assert_eq!(
        vector("cpu > 1", t),
        vec![
            (
                cpu(&[("instance", "a"), ("job", "y"), ("mode", "sys")]),
                4.0
            ),
            (
                cpu(&[("instance", "b"), ("job", "x"), ("mode", "user")]),
                2.0
            ),
        ]
    );
    // A scalar on the left still keeps the vector's value.
    assert_eq!(
        vector("1 < cpu", t)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        vec![4.0, 2.0]
    );
    // bool returns 0/1 for every sample and drops the metric name.
    assert_eq!(
        vector("cpu > bool 1", t),
        vec![
            (
                labels(&[("instance", "a"), ("job", "x"), ("mode", "user")]),
                0.0
            ),
            (
                labels(&[("instance", "a"), ("job", "y"), ("mode", "sys")]),
                1.0
            ),
            (
                labels(&[("instance", "b"), ("job", "x"), ("mode", "user")]),
                1.0
            ),
        ]
    );
    assert_eq!(scalar("2 > bool 1", t), 1.0);
}

#[test]
fn set_operators() {
    let t = 10 * S;
    let values = |q: &str| vector(q, t).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    // and on(job): the job="x" series, since cpu{instance="b"} has job="x".
    assert_eq!(
        values("cpu and on(job) cpu{instance=\"b\"}"),
        vec![1.0, 2.0]
    );
    // unless: everything but the sys series.
    assert_eq!(values("cpu unless cpu{mode=\"sys\"}"), vec![1.0, 2.0]);
    // or: the left side, then right-side series with no match on the left.
    assert_eq!(
        values("cpu{job=\"y\"} or cpu{job=\"x\"}"),
        vec![4.0, 1.0, 2.0]
    );
}

// ---------------------------------------------------------------- other functions

#[test]
fn absent_builds_labels_from_equality_matchers() {
    let t = 10 * S;
    // job="x" is an equality matcher; the regex matcher contributes nothing.
    assert_eq!(
        vector("absent(nonexistent{job=\"x\", instance=~\"a.*\"})", t),
        vec![(labels(&[("job", "x")]), 1.0)]
    );
    assert!(vector("absent(cpu)", t).is_empty());
    assert_eq!(
        vector("absent_over_time(nonexistent{job=\"x\"}[5m])", t),
        vec![(labels(&[("job", "x")]), 1.0)]
    );
    assert!(vector("absent_over_time(cpu[5m])", t).is_empty());
}

#[test]
fn label_replace_and_label_join() {
    let t = 10 * S;
    // "(.*)" matches "a": host = "a-h"; the metric name stays.
    assert_eq!(
        vector(
            "label_replace(cpu{mode=\"sys\"}, \"host\", \"$1-h\", \"instance\", \"(.*)\")",
            t
        ),
        vec![(
            labels(&[
                ("__name__", "cpu"),
                ("host", "a-h"),
                ("instance", "a"),
                ("job", "y"),
                ("mode", "sys")
            ]),
            4.0
        )]
    );
    // The regex is anchored: "b(.*)" does not match "a", the series is unchanged.
    assert_eq!(
        vector(
            "label_replace(cpu{mode=\"sys\"}, \"host\", \"$1\", \"instance\", \"b(.*)\")",
            t
        )[0]
        .0,
        labels(&[
            ("__name__", "cpu"),
            ("instance", "a"),
            ("job", "y"),
            ("mode", "sys")
        ])
    );
    assert_eq!(
        label(
            &vector(
                "label_join(cpu{mode=\"sys\"}, \"jm\", \"-\", \"job\", \"mode\")",
                t
            )[0]
            .0,
            "jm"
        ),
        Some("y-sys")
    );
    assert!(exec_err("label_replace(cpu, \"x\", \"\", \"y\", \"(\")", t)
        .starts_with("invalid regular expression in label_replace()"));
}

#[test]
fn math_and_misc_functions() {
    let t = 10 * S;
    let values = |q: &str| vector(q, t).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    assert_eq!(values("clamp_max(cpu, 2)"), vec![1.0, 2.0, 2.0]);
    assert_eq!(values("clamp(cpu, 1.5, 3)"), vec![1.5, 3.0, 2.0]);
    // round(x / 3): 0.33 -> 0, 1.33 -> 1, 0.67 -> 1.
    assert_eq!(values("round(cpu / 3)"), vec![0.0, 1.0, 1.0]);
    // round to the nearest 0.5: 4/3 -> 1.5.
    assert_eq!(values("round(cpu{mode=\"sys\"} / 3, 0.5)"), vec![1.5]);
    assert_eq!(values("sort_desc(cpu)"), vec![4.0, 2.0, 1.0]);
    assert_eq!(values("sort(cpu)"), vec![1.0, 2.0, 4.0]);
    assert_eq!(values("-cpu{mode=\"sys\"}"), vec![-4.0]);
    assert_eq!(
        vector("-cpu{mode=\"sys\"}", t)[0].0.len(),
        3,
        "name dropped"
    );
    assert_eq!(values("sqrt(cpu{mode=\"sys\"})"), vec![2.0]);
    assert_eq!(values("log2(cpu{mode=\"sys\"})"), vec![2.0]);
    assert_eq!(scalar("scalar(sum(cpu))", t), 7.0);
    assert!(scalar("scalar(cpu)", t).is_nan(), "more than one element");
    assert_eq!(scalar("time()", t), 10.0);
    assert_eq!(values("vector(time())"), vec![10.0]);
    // timestamp() of a selector is the sample's own time: at 100s the latest sample of g
    // is the one at 60s; at 10s it is the one at 0s.
    assert_eq!(one("timestamp(g)", 100 * S), 60.0);
    assert_eq!(values("timestamp(g)"), vec![0.0]);
    // On anything else it is the evaluation time.
    assert_eq!(one("timestamp(g + 1)", 100 * S), 100.0);
    // 1970-01-01T00:00:10Z was a Thursday.
    assert_eq!(values("day_of_week()"), vec![4.0]);
    assert_eq!(values("year(vector(86400 * 365))"), vec![1971.0]);
    assert_eq!(
        match instant("\"hello\"", t) {
            Ok(Value::String { v, .. }) => v,
            other => panic!("{other:?}"),
        },
        "hello"
    );
}

// ---------------------------------------------------------------- selectors

#[test]
fn lookback_and_staleness() {
    // g: 1 at 0s, 2 at 60s. Lookback 5m = (t - 300s, t].
    assert_eq!(one("g", 300 * S), 2.0);
    assert_eq!(one("g", 360 * S - 1), 2.0);
    // At 360s the sample at 60s is exactly 5m old: outside the left-open window.
    assert!(vector("g", 360 * S).is_empty());
    // st: 1 at 0s, then a staleness marker at 30s: the series ends there.
    assert_eq!(one("st", 20 * S), 1.0);
    assert!(vector("st", 30 * S).is_empty());
    assert!(vector("st", 60 * S).is_empty());
    // Range vectors skip the marker: (-20s, 40s] holds only the sample at 0s.
    assert_eq!(one("count_over_time(st[1m])", 40 * S), 1.0);
    // The metric name is part of the result labels.
    assert_eq!(vector("g", 300 * S)[0].0, labels(&[("__name__", "g")]));
}

#[test]
fn offset_and_at_modifiers() {
    // offset 1m at 90s looks at 30s: the sample at 0s.
    assert_eq!(one("g offset 1m", 90 * S), 1.0);
    // A negative offset looks ahead: at 10s, -1m looks at 70s: the sample at 60s.
    assert_eq!(one("g offset -1m", 10 * S), 2.0);
    // @ fixes the time: @ 60 at 1000s sees the sample at 60s.
    assert_eq!(one("g @ 60", 1000 * S), 2.0);
    // @ then offset: 60s - 30s = 30s.
    assert_eq!(one("g @ 60 offset 30s", 1000 * S), 1.0);
    // A range with offset: increase over (180s, 240s] instead of (240s, 300s].
    assert_close(
        one("increase(http_requests_total[1m] offset 1m)", 300 * S),
        40.0,
        "offset rate",
    );
}

#[test]
fn regex_matchers_are_anchored() {
    let t = 10 * S;
    assert_eq!(vector("cpu{instance=~\"a\"}", t).len(), 2);
    assert_eq!(vector("cpu{instance!~\"a\"}", t).len(), 1);
    assert_eq!(vector("cpu{job!=\"x\"}", t).len(), 1);
    // "a" would match "a" only; the regex must match the whole value.
    assert!(vector("cpu{mode=~\"use\"}", t).is_empty());
}

#[test]
fn subqueries() {
    // (−30s, 90s] at a 1m step: g at 0s (1) and at 60s (2).
    assert_eq!(one("sum_over_time(g[2m:1m])", 90 * S), 3.0);
    // The rate is 2/3 at every inner step.
    assert_close(
        one(
            "max_over_time(rate(http_requests_total[1m])[2m:30s])",
            300 * S,
        ),
        2.0 / 3.0,
        "subquery of rate",
    );
    // A subquery alone is a range vector: steps 60s and 120s inside (0, 120s].
    match instant("g[2m:1m]", 120 * S) {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].samples, vec![(60 * S, 2.0), (120 * S, 2.0)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn instant_query_of_a_range_selector_returns_raw_samples() {
    // (0, 60s] of reset_total: 15s..60s.
    match instant("reset_total[1m]", 60 * S) {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0].samples,
                vec![
                    (15 * S, 20.0),
                    (30 * S, 5.0),
                    (45 * S, 15.0),
                    (60 * S, 25.0)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- range queries

fn range(q: &str, start: i64, end: i64, step: i64) -> Vec<Series> {
    match Engine::default().range(&storage(), q, start, end, step) {
        Ok(Value::Matrix(m)) => m,
        other => panic!("{q}: expected a matrix, got {other:?}"),
    }
}

#[test]
fn range_query_steps_are_aligned_to_start() {
    // Steps 0, 30, 60, 90, 120s; g is 1 until the sample at 60s.
    assert_eq!(
        range("g", 0, 120 * S, 30 * S),
        vec![Series {
            labels: labels(&[("__name__", "g")]),
            samples: vec![
                (0, 1.0),
                (30 * S, 1.0),
                (60 * S, 2.0),
                (90 * S, 2.0),
                (120 * S, 2.0)
            ],
        }]
    );
    // An end that is not on a step is not evaluated: 0, 30, 60, 90s.
    let m = range("g", 0, 100 * S, 30 * S);
    let times: Vec<i64> = m[0].samples.iter().map(|&(t, _)| t).collect();
    assert_eq!(times, vec![0, 30 * S, 60 * S, 90 * S]);
    // A start that is not a multiple of the step: 5, 35, 65s.
    let m = range("g", 5 * S, 70 * S, 30 * S);
    assert_eq!(
        m[0].samples,
        vec![(5 * S, 1.0), (35 * S, 1.0), (65 * S, 2.0)]
    );
    // A series keeps only the steps where it had a value: st is stale from 30s.
    assert_eq!(
        range("st", 0, 60 * S, 30 * S),
        vec![Series {
            labels: labels(&[("__name__", "st")]),
            samples: vec![(0, 1.0)],
        }]
    );
    // A scalar gives one series without labels.
    assert_eq!(
        range("1 + 1", 0, 60 * S, 30 * S),
        vec![Series {
            labels: Labels::new(),
            samples: vec![(0, 2.0), (30 * S, 2.0), (60 * S, 2.0)],
        }]
    );
}

#[test]
fn range_query_loads_each_selector_once_and_sorts_by_labels() {
    let store = storage();
    let engine = Engine::default();
    let m = match engine.range(
        &store,
        "rate(http_requests_total[1m]) or rate(reset_total[1m])",
        300 * S,
        360 * S,
        30 * S,
    ) {
        Ok(Value::Matrix(m)) => m,
        other => panic!("{other:?}"),
    };
    // Two selectors, three steps: two selects.
    assert_eq!(store.selects.load(Ordering::SeqCst), 2);
    // reset_total has no samples after 60s, so only the steady rate of 2/3 per second
    // remains, at every step.
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].labels, labels(&[("instance", "a"), ("job", "api")]));
    assert_eq!(m[0].samples.len(), 3);
    for &(_, v) in &m[0].samples {
        assert_close(v, 2.0 / 3.0, "rate per step");
    }
    // Result series are sorted by labels, whatever the evaluation order.
    let m = range("sum by (job) (cpu) or vector(1)", 0, 0, S);
    let order: Vec<Labels> = m.into_iter().map(|s| s.labels).collect();
    assert_eq!(
        order,
        vec![
            Labels::new(),
            labels(&[("job", "x")]),
            labels(&[("job", "y")])
        ]
    );
}

#[test]
fn range_query_parameters_are_checked() {
    let e = Engine::default();
    let s = storage();
    assert!(matches!(
        e.range(&s, "g", 0, 10, 0),
        Err(EvalError::Parse(_))
    ));
    assert!(matches!(
        e.range(&s, "g", 10, 0, 1),
        Err(EvalError::Parse(_))
    ));
    assert!(matches!(
        e.range(&s, "g", 0, 20_000, 1),
        Err(EvalError::Parse(_))
    ));
    assert_eq!(
        e.range(&s, "g[5m]", 0, 10, 1),
        Err(EvalError::Parse(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into()
        ))
    );
}

// ---------------------------------------------------------------- limits and errors

#[test]
fn samples_limit() {
    let store = storage();
    let engine = Engine {
        max_samples: 10,
        ..Engine::default()
    };
    // http_requests_total[5m] at 300s loads 20 samples (15s..300s) > 10.
    assert!(matches!(
        engine.instant(&store, "rate(http_requests_total[5m])", 300 * S),
        Err(EvalError::Limit(_))
    ));
    // Loads nothing but produces 11 points (0..100s by 10s) > 10.
    assert!(matches!(
        engine.range(&store, "vector(1)", 0, 100 * S, 10 * S),
        Err(EvalError::Limit(_))
    ));
    // 10 points fit.
    assert!(engine.range(&store, "vector(1)", 0, 90 * S, 10 * S).is_ok());
}

#[test]
fn timeout() {
    let engine = Engine {
        timeout: std::time::Duration::ZERO,
        ..Engine::default()
    };
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(matches!(
        engine.range(&storage(), "g", 0, 100 * S, S),
        Err(EvalError::Timeout(_))
    ));
}

#[test]
fn errors_map_to_the_right_variant() {
    assert!(matches!(instant("sum(", 0), Err(EvalError::Parse(_))));
    assert_eq!(
        exec_err("histogram_count(cpu)", 0),
        "function histogram_count() is not supported"
    );
    assert!(exec_err("limitk(1, cpu)", 0).ends_with("is not supported"));
    assert!(exec_err("cpu{job=\"x\" or job=\"y\"}", 0).ends_with("is not supported"));
    assert_eq!(
        Engine::default().instant(&FailingStorage, "cpu", 0),
        Err(EvalError::Storage("disk on fire".into()))
    );
    let err = EvalError::Limit("x".into());
    assert_eq!((err.error_type(), err.http_status()), ("execution", 422));
    assert_eq!(EvalError::Parse("x".into()).http_status(), 400);
    assert_eq!(EvalError::Timeout("x".into()).error_type(), "timeout");
}

#[test]
fn json_of_an_instant_query() {
    let v = instant("cpu{mode=\"sys\"}", 10_500).unwrap();
    assert_eq!(
        to_prometheus_json(&v).to_string(),
        r#"{"result":[{"metric":{"__name__":"cpu","instance":"a","job":"y","mode":"sys"},"value":[10.5,"4"]}],"resultType":"vector"}"#
    );
}

#[test]
fn range_query_equals_instant_queries_at_every_step() {
    // A range query must give, at each step, exactly what an instant query gives at that
    // time. This covers the subquery cache shared between steps, nested subqueries, @ and
    // offset, and the assembly of series that come and go.
    let queries = [
        "rate(http_requests_total[1m])",
        "max_over_time(rate(http_requests_total[1m])[2m:30s])",
        "sum_over_time(g[2m:1m] offset 30s)",
        "min_over_time(sum_over_time(g[1m:15s])[2m:45s])",
        "topk(1, cpu) or g",
        "g @ 60",
        "histogram_quantile(0.5, req_seconds_bucket)",
        "increase(reset_total[45s])",
        "sum by (job) (rate({__name__=~\"http_requests_total|reset_total\"}[1m]))",
        "st",
    ];
    let (start, end, step) = (0, 400 * S, 15 * S);
    for q in queries {
        let mut expected: Vec<Series> = Vec::new();
        let mut t = start;
        while t <= end {
            for (labels, v) in vector(q, t) {
                match expected.iter_mut().find(|s| s.labels == labels) {
                    Some(s) => s.samples.push((t, v)),
                    None => expected.push(Series {
                        labels,
                        samples: vec![(t, v)],
                    }),
                }
            }
            t += step;
        }
        expected.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert!(!expected.is_empty(), "{q}: no data");
        assert_eq!(range(q, start, end, step), expected, "{q}");
    }
}

#[test]
fn a_series_returned_in_parts_is_merged() {
    // A store may return one series as several parts (chunks, segments), even overlapping.
    let store = MemStorage {
        series: vec![
            series("split", &[], &[(0, 1.0), (15 * S, 2.0)]),
            series("split", &[], &[(15 * S, 2.0), (30 * S, 3.0)]),
        ],
        selects: AtomicUsize::new(0),
    };
    let e = Engine::default();
    // One series whose latest value is 3, not two series summing to 6.
    assert_eq!(
        e.instant(&store, "sum(split)", 30 * S),
        Ok(Value::Vector(vec![Sample {
            labels: Labels::new(),
            t_ms: 30 * S,
            v: 3.0
        }]))
    );
    // (-30s, 30s] holds 0, 15 and 30s once each.
    match e.instant(&store, "count_over_time(split[1m])", 30 * S) {
        Ok(Value::Vector(v)) => assert_eq!(v[0].v, 3.0),
        other => panic!("{other:?}"),
    }
}
