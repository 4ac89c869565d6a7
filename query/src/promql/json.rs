//! [`to_prometheus_json`] and the Go float formatting Prometheus' answers use.

use serde_json::{json, Map, Number};

use super::value::{Labels, Value};

/// `data` of a Prometheus API answer: `{"resultType": ..., "result": ...}`, values as strings
/// (`"NaN"`, `"+Inf"`, `"-Inf"`), timestamps as float seconds (ms / 1000).
pub fn to_prometheus_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Scalar { t_ms, v } => json!({
            "resultType": "scalar",
            "result": [timestamp(*t_ms), format_value(*v)],
        }),
        Value::String { t_ms, v } => json!({
            "resultType": "string",
            "result": [timestamp(*t_ms), v],
        }),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples
                .iter()
                .map(|s| json!({
                    "metric": metric(&s.labels),
                    "value": [timestamp(s.t_ms), format_value(s.v)],
                }))
                .collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series
                .iter()
                .map(|s| json!({
                    "metric": metric(&s.labels),
                    "values": s
                        .samples
                        .iter()
                        .map(|&(t, v)| json!([timestamp(t), format_value(v)]))
                        .collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>(),
        }),
    }
}

fn metric(labels: &Labels) -> serde_json::Value {
    let mut m = Map::new();
    for (name, value) in labels {
        m.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    serde_json::Value::Object(m)
}

/// Seconds as a JSON number: an integer for whole seconds (as Prometheus writes them),
/// otherwise ms / 1000.
fn timestamp(t_ms: i64) -> serde_json::Value {
    if t_ms % 1000 == 0 {
        serde_json::Value::Number(Number::from(t_ms / 1000))
    } else {
        Number::from_f64(t_ms as f64 / 1000.0)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// A sample value as Prometheus' API writes it: Go's `strconv.FormatFloat(v, 'f', -1, 64)`,
/// or the `'e'` format below 1e-6 and from 1e21 on.
pub(crate) fn format_value(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exp(v)
    } else {
        format!("{v}")
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` (shortest digits, no exponent).
pub(crate) fn format_float_f(v: f64) -> String {
    match special(v) {
        Some(s) => s.to_string(),
        None => format!("{v}"),
    }
}

/// Go's `%v` for a float64 (`%g` with shortest digits): exponent form below 1e-4 and from
/// 1e6 on.
pub(crate) fn go_fmt_v(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let exp = exponent(v);
    if v != 0.0 && !(-4..6).contains(&exp) {
        go_exp(v)
    } else {
        format!("{v}")
    }
}

fn exponent(v: f64) -> i32 {
    let s = format!("{v:e}");
    s.rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

/// Go's `'e'` format with shortest digits: `1.5e+21`, `1e-07`.
fn go_exp(v: f64) -> String {
    let s = format!("{v:e}");
    let Some((mantissa, exp)) = s.rsplit_once('e') else {
        return s;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::super::value::{Sample, Series};
    use super::*;

    #[test]
    fn values_are_formatted_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(-2.5), "-2.5");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(0.000001), "0.000001");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_fmt_v(1e19), "1e+19");
        assert_eq!(go_fmt_v(12.5), "12.5");
        assert_eq!(go_fmt_v(123456.0), "123456");
        assert_eq!(go_fmt_v(1e6), "1e+06");
    }

    #[test]
    fn json_shapes() {
        let vector = Value::Vector(vec![Sample {
            labels: vec![
                ("__name__".into(), "up".into()),
                ("job".into(), "prometheus".into()),
            ],
            t_ms: 1_435_781_451_781,
            v: 1.0,
        }]);
        assert_eq!(
            to_prometheus_json(&vector).to_string(),
            r#"{"result":[{"metric":{"__name__":"up","job":"prometheus"},"value":[1435781451.781,"1"]}],"resultType":"vector"}"#
        );
        let scalar = Value::Scalar {
            t_ms: 1_000,
            v: f64::NEG_INFINITY,
        };
        assert_eq!(
            to_prometheus_json(&scalar).to_string(),
            r#"{"result":[1,"-Inf"],"resultType":"scalar"}"#
        );
        let matrix = Value::Matrix(vec![Series {
            labels: vec![],
            samples: vec![(0, f64::NAN), (1_500, 2.0)],
        }]);
        assert_eq!(
            to_prometheus_json(&matrix).to_string(),
            r#"{"result":[{"metric":{},"values":[[0,"NaN"],[1.5,"2"]]}],"resultType":"matrix"}"#
        );
        let string = Value::String {
            t_ms: 2_000,
            v: "hi".into(),
        };
        assert_eq!(
            to_prometheus_json(&string).to_string(),
            r#"{"result":[2,"hi"],"resultType":"string"}"#
        );
    }
}
