//! Times as the APIs read and write them: unix nanoseconds, RFC 3339.

use std::time::UNIX_EPOCH;

/// Unix nanoseconds, or an RFC 3339 time.
pub fn parse_time_nanos(text: &str) -> Option<u64> {
    if let Ok(nanos) = text.parse::<u64>() {
        return Some(nanos);
    }
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    u64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

pub use sightline_collector::now_nanos;

/// Unix nanoseconds as RFC 3339 with nanoseconds.
pub fn format_time(nanos: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + std::time::Duration::from_nanos(nanos)).to_string()
}
