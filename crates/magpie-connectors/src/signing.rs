//! The platforms' signature algorithms.
//!
//! DingTalk 加签: `base64(HMAC-SHA256(key = secret, msg = ts_ms + "\n" + secret))`, sent URL-encoded
//! in the query. Feishu/Lark: `base64(HMAC-SHA256(key = ts_s + "\n" + secret, msg = ""))`, sent as is
//! in the JSON body. The two arrange key and message the other way round.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(msg);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// DingTalk robot signature (base64, not yet URL-encoded) for a millisecond timestamp.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    hmac_b64(secret.as_bytes(), string_to_sign.as_bytes())
}

/// Feishu/Lark bot signature for a timestamp in seconds.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let string_to_sign = format!("{timestamp_s}\n{secret}");
    hmac_b64(string_to_sign.as_bytes(), b"")
}

/// Characters left as they are in a query component: RFC 3986's unreserved set.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a query value once (`+` → `%2B`, `/` → `%2F`, `=` → `%3D`).
pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Compares two strings in constant time (for signature checks).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_vectors() {
        let sign = dingtalk_sign("SECtest123", 1_700_000_000_000);
        assert_eq!(sign, "w3RMHXzixTMdzr8OHJUmVLS4IoPJVdu+Ut1LE48MePE=");
        assert_eq!(url_encode(&sign), "w3RMHXzixTMdzr8OHJUmVLS4IoPJVdu%2BUt1LE48MePE%3D");
        // DingTalk's documented login-free vector exercises the same HMAC → base64 → encode pipeline.
        let doc = hmac_b64(b"testappSecret", b"1546084445901");
        assert_eq!(doc, "HCbG3xNE3vzhO+u7qCUL1jS5hsu2n5r2cFhnTrtyDAE=");
        assert_eq!(url_encode(&doc), "HCbG3xNE3vzhO%2Bu7qCUL1jS5hsu2n5r2cFhnTrtyDAE%3D");
    }

    #[test]
    fn feishu_vectors() {
        assert_eq!(feishu_sign("demo", 1_599_360_473), "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=");
        assert_eq!(feishu_sign("dGhpcyBpcyBhIGtleQ==", 1_716_283_459), "8EyY+xxfJvzWjZQpdc2mgvQFaG7lF5nbxl7RITyMkJU=");
        // The DingTalk arrangement on the same inputs gives a different (rejected) signature.
        let wrong = hmac_b64(b"demo", b"1599360473\ndemo");
        assert_eq!(wrong, "DkEDUyVoOOJ539qBvUgMyzkzIdRWlf4e/V3Rq+ONJnQ=");
        assert_ne!(wrong, feishu_sign("demo", 1_599_360_473));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
