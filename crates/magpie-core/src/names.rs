//! Names of buses, rules, connections and flows.

/// Checks an object name: 2–60 characters of letters (any script), digits, `_` and `-`, starting
/// with a letter and ending with a letter or digit (Tencent EventBridge's rule, widened to
/// letters of every script).
pub fn check_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if !(2..=60).contains(&count) {
        return Err(format!("{name:?} must be 2 to 60 characters long"));
    }
    if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("{name:?} may hold only letters, digits, '_' and '-'"));
    }
    if !name.chars().next().is_some_and(char::is_alphabetic) {
        return Err(format!("{name:?} must start with a letter"));
    }
    if !name.chars().last().is_some_and(char::is_alphanumeric) {
        return Err(format!("{name:?} must end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        assert!(check_name("EBqw1").is_ok());
        assert!(check_name("告警规则1").is_ok());
        assert!(check_name("default").is_ok());
        assert!(check_name("a").is_err());
        assert!(check_name("1abc").is_err());
        assert!(check_name("abc-").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(61)).is_err());
    }
}
