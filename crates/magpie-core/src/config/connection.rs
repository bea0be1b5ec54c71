//! Connections: named destinations, their platform and secrets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::names::check_name;
use crate::rate::{RateLimit, RateSpec};

/// The robot platforms Magpie can send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) custom robot.
    Dingtalk,
    /// Feishu (飞书) custom bot.
    Feishu,
    /// Lark custom bot (Feishu's international twin).
    Lark,
}

impl Platform {
    /// The platform's name as written in configuration and error types.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Wecom => "wecom",
            Platform::Dingtalk => "dingtalk",
            Platform::Feishu => "feishu",
            Platform::Lark => "lark",
        }
    }

    /// The namespace of this platform's error types (`WECOM:RATE_LIMITED`).
    pub fn error_namespace(self) -> &'static str {
        match self {
            Platform::Wecom => "WECOM",
            Platform::Dingtalk => "DINGTALK",
            Platform::Feishu => "FEISHU",
            Platform::Lark => "LARK",
        }
    }
}

/// A named destination and its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// The connection name, referenced by robot steps.
    pub name: String,
    /// The platform.
    pub platform: Platform,
    /// The full webhook URL. May hold `${ENV}` references, resolved when sending.
    pub webhook: String,
    /// DingTalk 加签 or Feishu/Lark signature secret. May be a `${ENV}` reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The robot's custom keywords: a message lacking all of them gets the first prepended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// How long to wait for the platform's answer (default 10s).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The robot's rate limit, shared by every flow that sends through this connection:
    /// `20/min`, `[5/s, 100/min]` or `unlimited`. Default: the platform's documented limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// How long the connection pauses when the platform refuses a send for rate anyway (the robot
    /// is shared with another sender). Default: the platform's penalty (WeCom 60s, DingTalk 10m,
    /// Feishu/Lark 60s) or the platform's own wait hint when it gives one.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub penalty: Option<Duration>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Platform {
    /// The platform's documented rate limits per robot (../shared/reference/robots.md §0, §7).
    pub fn rate_limits(self) -> &'static [RateLimit] {
        const MINUTE: Duration = Duration::from_secs(60);
        const PER_MINUTE_20: &[RateLimit] = &[RateLimit::new(20, MINUTE)];
        const FEISHU: &[RateLimit] = &[RateLimit::new(5, Duration::from_secs(1)), RateLimit::new(100, MINUTE)];
        match self {
            Platform::Wecom | Platform::Dingtalk => PER_MINUTE_20,
            Platform::Feishu | Platform::Lark => FEISHU,
        }
    }

    /// How long the platform keeps refusing after a rate-limit answer, when it says nothing itself:
    /// WeCom's window is a minute, DingTalk throttles for 10 minutes, Feishu/Lark's longest window
    /// is a minute.
    pub fn rate_penalty(self) -> Duration {
        match self {
            Platform::Dingtalk => Duration::from_secs(600),
            Platform::Wecom | Platform::Feishu | Platform::Lark => Duration::from_secs(60),
        }
    }
}

impl ConnectionSpec {
    /// The rate limits in force: the connection's `rate`, else the platform's.
    pub fn rate_limits(&self) -> &[RateLimit] {
        match &self.rate {
            Some(r) => r.limits(),
            None => self.platform.rate_limits(),
        }
    }

    /// Checks the connection's own fields; `at` is its path for errors.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_name(&self.name).map_err(|r| ConfigError::new(format!("{at}.name"), r))?;
        let webhook = &self.webhook;
        if webhook.trim().is_empty() {
            return Err(ConfigError::new(format!("{at}.webhook"), "the webhook URL is empty"));
        }
        if !(webhook.starts_with("http://") || webhook.starts_with("https://") || webhook.starts_with("${")) {
            return Err(ConfigError::new(
                format!("{at}.webhook"),
                "the webhook URL must start with https:// (or http:// for a local simulator)",
            ));
        }
        crate::env::check_references(webhook).map_err(|r| ConfigError::new(format!("{at}.webhook"), r))?;
        if webhook.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(format!("{at}.webhook"), "the webhook URL has spaces or control characters"));
        }
        if webhook.contains("***") {
            return Err(ConfigError::new(
                format!("{at}.webhook"),
                "this is a masked webhook (as Magpie shows it): give the full URL, or send the masked one unchanged to keep the stored one",
            ));
        }
        if let Some(secret) = &self.secret {
            if matches!(self.platform, Platform::Wecom) {
                return Err(ConfigError::new(format!("{at}.secret"), "WeCom robots have no signing secret"));
            }
            if secret.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.secret"),
                    "the secret is empty; remove the field to send unsigned",
                ));
            }
            crate::env::check_references(secret).map_err(|r| ConfigError::new(format!("{at}.secret"), r))?;
        }
        if self.keywords.len() > 10 {
            return Err(ConfigError::new(format!("{at}.keywords"), "a robot takes at most 10 keywords"));
        }
        if let Some(t) = self.timeout
            && (t < Duration::from_millis(100) || t > Duration::from_secs(600))
        {
            return Err(ConfigError::new(format!("{at}.timeout"), "between 100ms and 10m"));
        }
        if let Some(p) = self.penalty
            && (p.is_zero() || p > Duration::from_secs(24 * 3600))
        {
            return Err(ConfigError::new(format!("{at}.penalty"), "between 1ms and 24h"));
        }
        if let Some(i) = self.keywords.iter().position(|k| k.trim().is_empty()) {
            return Err(ConfigError::new(format!("{at}.keywords[{i}]"), "a keyword cannot be empty"));
        }
        Ok(())
    }
}
