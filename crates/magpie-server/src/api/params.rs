//! Query parameters shared by listing routes: times and page sizes.

use magpie_core::ConfigError;

use crate::error::ApiError;

/// Default page size of listings.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page of listings.
pub const MAX_LIMIT: usize = 1_000;

/// A point in time: a duration back from now (`1h`, `30m`), an RFC 3339 time
/// (`2026-12-01T08:00:00Z`; UTC when it has no offset), or milliseconds since the epoch.
pub fn time(value: &str, field: &str, now_ms: i64) -> Result<i64, ApiError> {
    let v = value.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(d) = humantime::parse_duration(v) {
        // Further back than the epoch is the epoch: everything.
        return Ok(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).max(0));
    }
    if let Some(ms) = magpie_core::event::rfc3339_ms(v) {
        return Ok(ms.max(0));
    }
    Err(ApiError::config(ConfigError::new(
        field,
        format!("{v:?} is not a time: give a duration back from now (1h, 30m), an RFC 3339 time or epoch milliseconds"),
    )))
}

/// A page size: default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`].
pub fn limit(value: Option<usize>) -> Result<usize, ApiError> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::config(ConfigError::new("limit", "must be at least 1"))),
        Some(n) if n > MAX_LIMIT => Err(ApiError::config(ConfigError::new("limit", format!("at most {MAX_LIMIT}")))),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time("1h", "since", 10_000_000).unwrap(), 10_000_000 - 3_600_000);
        assert_eq!(time("1700000000000", "since", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(time("300000000y", "since", 10_000).unwrap(), 0, "further back than the epoch: everything");
        assert_eq!(time("2023-11-14T22:13:20Z", "since", 0).unwrap(), 1_700_000_000_000);
        let e = time("yesterday", "since", 0).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("since"));
        assert!(limit(Some(0)).is_err() && limit(Some(5_000)).is_err());
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }
}
