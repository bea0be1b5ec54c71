//! Byte-accurate truncation: the platforms count UTF-8 bytes, not characters.

const SUFFIX: &str = "\n…(truncated)";

/// Cuts `s` to at most `max` UTF-8 bytes on a character boundary, ending with a truncation note
/// when anything was cut.
pub fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let budget = max.saturating_sub(SUFFIX.len());
    let mut end = budget.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_string();
    if max >= SUFFIX.len() {
        out.push_str(SUFFIX);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_utf8("short", 10), "short");
        let cjk = "告".repeat(2000); // 6000 bytes
        let t = truncate_utf8(&cjk, 4096);
        assert!(t.len() <= 4096, "{}", t.len());
        assert!(t.ends_with("…(truncated)"));
        assert!(t.starts_with("告告"));
    }
}
