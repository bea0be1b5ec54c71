//! Rate limits of a destination: `20/min`, `[5/s, 100/min]`, or `unlimited`.
//!
//! A limit is a sliding window: at most `count` messages in any span of `per`. The outbox shapes
//! sends to stay inside every limit of a connection; the robot simulator enforces the same form.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most `count` messages in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Messages allowed in one window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

/// Most messages per window.
pub const MAX_COUNT: u64 = 1_000_000;
/// Shortest window a limit may have.
pub const MIN_WINDOW: Duration = Duration::from_millis(100);
/// Longest window a limit may have.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl RateLimit {
    /// A limit of `count` per `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    /// Parses `N/unit` where unit is `s`, `min`, `h` (or their long names) or a duration such as
    /// `2s` or `500ms`: `20/min`, `5/s`, `5/2s`.
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let hint = "write a rate as COUNT/WINDOW, e.g. 20/min, 5/s, 5/2s (or `unlimited`)";
        let (count, window) = s.split_once('/').ok_or_else(|| format!("{s:?}: {hint}"))?;
        let count: u64 =
            count.trim().parse().map_err(|_| format!("{s:?}: the count must be a whole number; {hint}"))?;
        if count == 0 || count > MAX_COUNT {
            return Err(format!("{s:?}: the count must be between 1 and {MAX_COUNT}"));
        }
        let count = count as u32;
        let window = window.trim();
        let per = match window {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|e| format!("{s:?}: window {other:?}: {e}; {hint}"))?,
        };
        if per < MIN_WINDOW || per > MAX_WINDOW {
            return Err(format!("{s:?}: the window must be between 100ms and 24h"));
        }
        Ok(RateLimit { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_millis() {
            1_000 => write!(f, "{}/s", self.count),
            60_000 => write!(f, "{}/min", self.count),
            3_600_000 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

/// A connection's `rate:` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateSpec {
    /// No shaping (a receiver of your own, or a benchmark).
    Unlimited,
    /// Every limit holds at once.
    Limits(Vec<RateLimit>),
}

impl RateSpec {
    /// The limits in force (none when unlimited).
    pub fn limits(&self) -> &[RateLimit] {
        match self {
            RateSpec::Unlimited => &[],
            RateSpec::Limits(l) => l,
        }
    }
}

impl Serialize for RateSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RateSpec::Unlimited => s.serialize_str("unlimited"),
            RateSpec::Limits(l) if l.len() == 1 => s.serialize_str(&l[0].to_string()),
            RateSpec::Limits(l) => s.collect_seq(l.iter().map(|x| x.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let raw = Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected `unlimited`, a rate such as 20/min, or a list of rates"))?;
        let items = match raw {
            Raw::One(s) if s.trim().eq_ignore_ascii_case("unlimited") => return Ok(RateSpec::Unlimited),
            Raw::One(s) => vec![s],
            Raw::Many(v) if v.iter().any(|s| s.trim().eq_ignore_ascii_case("unlimited")) => {
                return Err(serde::de::Error::custom("`unlimited` stands alone: it cannot be combined with limits"));
            }
            Raw::Many(v) => v,
        };
        if items.is_empty() {
            return Err(serde::de::Error::custom("an empty list of rates: write `unlimited` for no limit"));
        }
        let limits = items.iter().map(|s| RateLimit::parse(s)).collect::<Result<Vec<_>, _>>();
        limits.map(RateSpec::Limits).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(RateLimit::parse("20/min").unwrap(), RateLimit::new(20, Duration::from_secs(60)));
        assert_eq!(RateLimit::parse("5/s").unwrap(), RateLimit::new(5, Duration::from_secs(1)));
        assert_eq!(RateLimit::parse("5 / 2s").unwrap(), RateLimit::new(5, Duration::from_secs(2)));
        assert_eq!(RateLimit::parse("100/minute").unwrap().to_string(), "100/min");
        assert_eq!(RateLimit::parse("5/2s").unwrap().to_string(), "5/2s");
        for bad in ["20", "0/min", "x/min", "5/fortnight", "5/10ms", "5/2days", "1000000000000/s", "4294967295/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
        let spec: RateSpec = serde_json::from_str(r#"["5/s", "100/min"]"#).unwrap();
        assert_eq!(spec.limits().len(), 2);
        assert_eq!(serde_json::to_string(&spec).unwrap(), r#"["5/s","100/min"]"#);
        let spec: RateSpec = serde_json::from_str(r#""unlimited""#).unwrap();
        assert_eq!(spec, RateSpec::Unlimited);
        let spec: RateSpec = serde_json::from_str(r#""20/min""#).unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), r#""20/min""#);
        assert!(serde_json::from_str::<RateSpec>("[]").is_err());
        assert!(serde_json::from_str::<RateSpec>("20").is_err());
        let e = serde_json::from_str::<RateSpec>(r#"["5/s", "unlimited"]"#).unwrap_err();
        assert!(e.to_string().contains("stands alone"), "{e}");
    }
}
