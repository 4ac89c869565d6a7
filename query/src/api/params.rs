//! Query-string parsing shared by the APIs: repeatable parameters, Go-style durations
//! (`1.2s`, `500us`, `1m30s`) and times.

use super::ApiError;
pub use crate::time::{format_time, now_nanos, parse_time_nanos};

/// The decoded `key=value` pairs of a query string, in order, repeats kept.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last non-empty value of the first of `names` that is present.
    pub fn get(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .rev()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        })
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn u64(&self, names: &[&str]) -> Result<Option<u64>, ApiError> {
        self.get(names)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("parameter {:?}: not a number: {v:?}", names[0]))
                })
            })
            .transpose()
    }

    pub fn duration_nanos(&self, names: &[&str]) -> Result<Option<u64>, ApiError> {
        self.get(names)
            .map(|v| {
                parse_duration_nanos(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "parameter {:?}: not a duration: {v:?} (use e.g. 1.2s, 500ms, 100us)",
                        names[0]
                    ))
                })
            })
            .transpose()
    }

    pub fn bool(&self, names: &[&str]) -> Result<bool, ApiError> {
        match self.get(names) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "parameter {:?}: expected true or false, got {v:?}",
                names[0]
            ))),
        }
    }

    /// A JSON object of attribute conditions (Jaeger's `tags`, api_v3's `query.attributes`):
    /// string values as they are, other values as their JSON text.
    pub fn attributes_json(&self, name: &str) -> Result<Vec<(String, String)>, ApiError> {
        let Some(text) = self.get(&[name]) else {
            return Ok(Vec::new());
        };
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|err| ApiError::bad_request(format!("malformed {name} {text:?}: {err}")))?;
        Ok(map
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => (key, text),
                other => (key, other.to_string()),
            })
            .collect())
    }

    /// An RFC 3339 time, or unix nanoseconds.
    pub fn time_nanos(&self, names: &[&str]) -> Result<Option<u64>, ApiError> {
        self.get(names)
            .map(|v| {
                parse_time_nanos(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "parameter {:?}: expected an RFC 3339 time or unix nanoseconds, got {v:?}",
                        names[0]
                    ))
                })
            })
            .transpose()
    }
}

/// A trace id in hex, or a 400 saying why not.
pub fn parse_trace_id(text: &str) -> Result<sightline_proto::TraceId, ApiError> {
    text.parse()
        .map_err(|err| ApiError::bad_request(format!("malformed trace id {text:?}: {err}")))
}

/// A Go duration: a sequence of decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
pub fn parse_duration_nanos(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration_nanos("1.2s"), Some(1_200_000_000));
        assert_eq!(parse_duration_nanos("500us"), Some(500_000));
        assert_eq!(parse_duration_nanos("100ms"), Some(100_000_000));
        assert_eq!(parse_duration_nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_nanos("7ns"), Some(7));
        assert_eq!(parse_duration_nanos("5"), None);
        assert_eq!(parse_duration_nanos("1x"), None);
        assert_eq!(parse_duration_nanos(""), None);
    }

    #[test]
    fn times_and_repeated_params() {
        assert_eq!(
            parse_time_nanos("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_time_nanos("42"), Some(42));
        assert_eq!(parse_time_nanos("yesterday"), None);
        assert_eq!(format_time(1_500_000_000), "1970-01-01T00:00:01.500000000Z");
        let params = Params::parse(Some("tag=a%3A1&tag=b:2&service=&service=x&limit=3"));
        assert_eq!(params.all("tag").collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert_eq!(params.get(&["service"]), Some("x"));
        assert_eq!(params.u64(&["limit"]).unwrap(), Some(3));
        assert!(params.u64(&["service"]).is_err());
    }
}
