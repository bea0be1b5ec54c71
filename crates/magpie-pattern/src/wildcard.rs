//! Wildcard strings: `*` matches any run of characters, `\*` is a literal star, `\\` a backslash.
//! Matching is linear in the value: the literal pieces between stars are found left to right
//! (leftmost-first is optimal for star-only globs), never by backtracking.

/// A parsed wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    /// Literal pieces between stars.
    pieces: Vec<String>,
}

impl Wildcard {
    /// Parses a wildcard; two consecutive `*` or a dangling/unknown escape are refused.
    pub fn parse(s: &str) -> Result<Wildcard, String> {
        let mut pieces = vec![String::new()];
        let mut chars = s.chars();
        let mut last_was_star = false;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if last_was_star {
                        return Err("consecutive '*' characters are not allowed".into());
                    }
                    pieces.push(String::new());
                    last_was_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => pieces.last_mut().map(|p| p.push(e)).unwrap_or_default(),
                    Some(other) => return Err(format!("unknown escape \\{other}; only \\* and \\\\ are allowed")),
                    None => return Err("a wildcard cannot end with a lone backslash".into()),
                },
                c => pieces.last_mut().map(|p| p.push(c)).unwrap_or_default(),
            }
            last_was_star = false;
        }
        Ok(Wildcard { pieces })
    }

    /// Parses quamina's `shellstyle`: `*` matches any run of characters and there are no escapes
    /// (a backslash is an ordinary character); two consecutive `*` are refused.
    pub fn parse_shellstyle(s: &str) -> Result<Wildcard, String> {
        if s.contains("**") {
            return Err("consecutive '*' characters are not allowed".into());
        }
        Ok(Wildcard { pieces: s.split('*').map(str::to_string).collect() })
    }

    /// How costly the wildcard would be for an automaton that follows every star at once (as
    /// AWS's does): for each star, the number of stars up to it whose following text starts with
    /// the same character (they can all be waiting at the same place of a value). Magpie's own
    /// matching is linear whatever this is; it exists to refuse what AWS refuses.
    pub fn complexity(&self) -> usize {
        let starts: Vec<Option<char>> = self.pieces[1..].iter().map(|p| p.chars().next()).collect();
        starts.iter().enumerate().map(|(i, c)| starts[..=i].iter().filter(|d| *d == c).count()).sum()
    }

    /// The literal start before the first star, if there is a star and the start is not empty.
    pub(crate) fn literal_prefix(&self) -> Option<&str> {
        (self.pieces.len() > 1 && !self.pieces[0].is_empty()).then(|| self.pieces[0].as_str())
    }

    /// The literal end after the last star, if there is a star and the end is not empty.
    pub(crate) fn literal_suffix(&self) -> Option<&str> {
        let last = self.pieces.last()?;
        (self.pieces.len() > 1 && !last.is_empty()).then_some(last.as_str())
    }

    /// The whole wildcard as a literal (meaningful when it has no star).
    pub(crate) fn literal(&self) -> &str {
        &self.pieces[0]
    }

    /// Number of stars.
    pub fn stars(&self) -> usize {
        self.pieces.len() - 1
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let n = self.pieces.len();
        if n == 1 {
            return value == self.pieces[0];
        }
        let first = &self.pieces[0];
        let last = &self.pieces[n - 1];
        if !value.starts_with(first.as_str()) {
            return false;
        }
        let rest = &value[first.len()..];
        if rest.len() < last.len() || !rest.ends_with(last.as_str()) {
            return false;
        }
        let mut middle = &rest[..rest.len() - last.len()];
        for piece in &self.pieces[1..n - 1] {
            match middle.find(piece.as_str()) {
                Some(i) => middle = &middle[i + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Wildcard;

    fn m(p: &str, v: &str) -> bool {
        Wildcard::parse(p).unwrap().matches(v)
    }

    #[test]
    fn matching() {
        assert!(m("ins-*-prod", "ins-web-prod"));
        assert!(!m("ins-*-prod", "ins-web-dev"));
        assert!(m("*218", "0001218"));
        assert!(m("2*0*1*7", "2607117"));
        assert!(!m("2*0*1*7", "2607118"));
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(!m("ab*ba", "aba"), "pieces may not overlap");
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\\*", r"a\zz"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
    }

    #[test]
    fn shellstyle_and_complexity() {
        let w = Wildcard::parse_shellstyle(r"a\*b").unwrap();
        assert!(w.matches(r"a\xxb") && !w.matches("a*b"), "no escapes in shellstyle");
        assert!(Wildcard::parse_shellstyle("a**").is_err());
        let c = |p: &str| Wildcard::parse(p).unwrap().complexity();
        assert_eq!(c("*:*:*:*:*:event-bus/*"), 16);
        assert_eq!(c("2*0*1*7"), 3);
        assert_eq!(c("arn:aws:events:*:*:event-bus/*"), 4);
        assert_eq!(c("exact"), 0);
    }

    #[test]
    fn refusals() {
        assert!(Wildcard::parse("a**b").is_err());
        assert!(Wildcard::parse("a\\").is_err());
        assert!(Wildcard::parse("a\\n").is_err());
    }
}
