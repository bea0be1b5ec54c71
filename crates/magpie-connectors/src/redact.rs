//! Keeping secrets out of logs, traces and API answers.

/// The webhook URL with its secret parts masked: WeCom `key`, DingTalk `access_token` and `sign`,
/// and the Feishu/Lark hook token in the path.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<invalid URL>".to_string();
    };
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let secret = matches!(k.as_ref(), "key" | "access_token" | "sign" | "token");
            (k.into_owned(), if secret { mask(&v) } else { v.into_owned() })
        })
        .collect();
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if let Some(i) = u.path().find("/hook/") {
        let path = u.path().to_string();
        let token = &path[i + 6..];
        let masked = format!("{}{}", &path[..i + 6], mask(token));
        u.set_path(&masked);
    }
    u.to_string().replace("%2A", "*")
}

fn mask(s: &str) -> String {
    let prefix: String = s.chars().take(4).collect();
    if s.chars().count() <= 8 { "***".to_string() } else { format!("{prefix}***") }
}

/// Masks the caller's egress IP that WeCom echoes in error messages (`from ip: 1.2.3.4`).
pub fn redact_text(s: &str) -> String {
    match s.find("from ip: ") {
        Some(i) => {
            let start = i + "from ip: ".len();
            let end = s[start..].find([',', ' ']).map(|j| start + j).unwrap_or(s.len());
            format!("{}<redacted>{}", &s[..start], &s[end..])
        }
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_tokens() {
        let r = redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa");
        assert!(!r.contains("7xxx-4bc4"), "{r}");
        assert!(r.contains("key=693a***"), "{r}");
        let r =
            redact_url("https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789&timestamp=1&sign=xyz%2B");
        assert!(!r.contains("0123456789"), "{r}");
        assert!(r.contains("timestamp=1"));
        let r = redact_url("https://open.feishu.cn/open-apis/bot/v2/hook/2c3f2d3e-1111-2222-3333-444455556666");
        assert!(!r.contains("444455556666"), "{r}");
        assert!(r.ends_with("/hook/2c3f***"), "{r}");
    }

    #[test]
    fn masks_echoed_ip() {
        assert_eq!(
            redact_text("invalid webhook url, hint: [1], from ip: 119.145.35.9, more info"),
            "invalid webhook url, hint: [1], from ip: <redacted>, more info"
        );
    }
}
