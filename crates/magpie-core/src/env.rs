//! `${NAME}` references to environment variables, used for secrets in configuration.

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`; `$$` stands for a literal `$`.
/// Fails naming the first variable that is not set.
pub fn resolve(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| "unterminated ${…} reference".to_string())?;
            let name = &body[..end];
            check_var_name(name)?;
            let value = lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks the syntax of the references in `text` without resolving them.
pub fn check_references(text: &str) -> Result<(), String> {
    resolve(text, |_| Some(String::new())).map(|_| ())
}

/// Whether `text` holds at least one `${NAME}` reference.
pub fn has_references(text: &str) -> bool {
    text.contains("${")
}

fn check_var_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok { Ok(()) } else { Err(format!("${{{name}}} is not a valid environment variable reference")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_reports_missing() {
        let lookup = |n: &str| (n == "KEY").then(|| "k1".to_string());
        assert_eq!(resolve("http://x/?key=${KEY}", lookup).unwrap(), "http://x/?key=k1");
        assert_eq!(resolve("a$$b$c", lookup).unwrap(), "a$b$c");
        assert_eq!(resolve("${NOPE}", lookup).unwrap_err(), "environment variable NOPE is not set");
        assert!(resolve("${bad-name}", lookup).is_err());
        assert!(resolve("${KEY", lookup).is_err());
    }
}
