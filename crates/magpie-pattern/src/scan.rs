//! A JSON scanner for the matcher: reads keys and scalars where rules look, and skips the rest
//! (strings and brackets are still scanned, but nothing is decoded or allocated).

use std::borrow::Cow;

/// Deepest nesting the scanner follows.
pub const MAX_DEPTH: usize = 256;

/// Why JSON text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Malformed JSON at this byte offset.
    #[error("malformed JSON at byte {0}")]
    Syntax(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

pub(crate) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    pub(crate) fn error(&self) -> ScanError {
        ScanError::Syntax(self.i)
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(crate) fn bump(&mut self) {
        self.i += 1;
    }

    pub(crate) fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    pub(crate) fn expect(&mut self, c: u8) -> Result<(), ScanError> {
        if self.next() == Some(c) { Ok(()) } else { Err(self.error()) }
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// A number, as the nearest double.
    pub(crate) fn number(&mut self) -> Result<f64, ScanError> {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ScanError::Syntax(start))?;
        if !valid_number(text.as_bytes()) {
            return Err(ScanError::Syntax(start));
        }
        text.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or(ScanError::Syntax(start))
    }

    /// An object key as raw bytes (decoded only when it has escapes). Keys are compared with the
    /// rules' field names byte for byte, so they need no UTF-8 check.
    pub(crate) fn key(&mut self) -> Result<Cow<'a, [u8]>, ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.error());
        }
        let start = self.i + 1;
        let mut j = start;
        while let Some(&c) = self.b.get(j) {
            match c {
                b'"' => {
                    self.i = j + 1;
                    return Ok(Cow::Borrowed(&self.b[start..j]));
                }
                b'\\' => break,
                _ => j += 1,
            }
        }
        match self.string()? {
            Cow::Borrowed(s) => Ok(Cow::Borrowed(s.as_bytes())),
            Cow::Owned(s) => Ok(Cow::Owned(s.into_bytes())),
        }
    }

    /// A string, decoded (borrowed when it has no escapes).
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, ScanError> {
        if self.next() != Some(b'"') {
            return Err(ScanError::Syntax(self.i.saturating_sub(1)));
        }
        let start = self.i;
        let rest = &self.b[start..];
        let end = quote_or_escape(rest).ok_or(self.error())?;
        if rest[..end].iter().any(|&c| c < 0x20) {
            return Err(ScanError::Syntax(start));
        }
        if rest[end] == b'"' {
            self.i = start + end + 1;
            return std::str::from_utf8(&rest[..end]).map(Cow::Borrowed).map_err(|_| ScanError::Syntax(start));
        }
        // Escapes (or a control character, which is an error).
        let mut out: Vec<u8> = rest[..end].to_vec();
        self.i = start + end;
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'/') => out.push(b'/'),
                    Some(b'b') => out.push(0x08),
                    Some(b'f') => out.push(0x0c),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'u') => {
                        let c = self.unicode_escape()?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(self.error()),
                },
                Some(c) if c >= 0x20 => out.push(c),
                _ => return Err(self.error()),
            }
        }
        String::from_utf8(out).map(Cow::Owned).map_err(|_| ScanError::Syntax(start))
    }

    fn hex4(&mut self) -> Result<u32, ScanError> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(self.error())?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error())?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.error())?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(self.error());
        }
        self.i += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, ScanError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                return Err(self.error());
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error());
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or(self.error())
    }

    fn skip_string(&mut self) -> Result<(), ScanError> {
        self.i += 1;
        loop {
            let rest = &self.b[self.i.min(self.b.len())..];
            let at = quote_or_escape(rest).ok_or(self.error())?;
            self.i += at + 1;
            if rest[at] == b'"' {
                return Ok(());
            }
            self.i += 1;
        }
    }

    /// Skips one value of any kind.
    pub(crate) fn skip_value(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    // Jump to the next structural byte.
                    self.i = next_structural(self.b, self.i);
                    match self.peek() {
                        Some(b'"') => self.skip_string()?,
                        Some(b'{' | b'[') => {
                            depth += 1;
                            self.i += 1;
                        }
                        Some(b'}' | b']') => {
                            depth -= 1;
                            self.i += 1;
                            if depth == 0 {
                                return Ok(());
                            }
                        }
                        Some(_) => self.i += 1,
                        None => return Err(self.error()),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(self.error()),
        }
    }
}

/// The first `"` or `\\` in `b`. Most strings in events are short, where a plain loop beats the
/// set-up of a vectorised search; longer ones get `memchr`.
#[inline]
fn quote_or_escape(b: &[u8]) -> Option<usize> {
    const SHORT: usize = 24;
    if let Some(i) = b.iter().take(SHORT).position(|&c| c == b'"' || c == b'\\') {
        return Some(i);
    }
    if b.len() <= SHORT {
        return None;
    }
    memchr::memchr2(b'"', b'\\', &b[SHORT..]).map(|i| i + SHORT)
}

/// The position of the first byte at or after `i` that opens or closes a string, object or
/// array (`b.len()` when there is none), eight bytes at a time.
#[inline]
fn next_structural(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The lowest byte flagged is always a zero byte of `x` (borrows only flag bytes above one).
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        // OR-ed with 0x26, `[` `]` `{` `}` (and `Y` `_` `y` DEL, checked below) become 0x7F.
        let brackets = zero_bytes((w | u64::from_ne_bytes([0x26; 8])) ^ u64::from_ne_bytes([0x7F; 8]));
        let quotes = zero_bytes(w ^ u64::from_ne_bytes([b'"'; 8]));
        let m = brackets | quotes;
        if m == 0 {
            i += 8;
            continue;
        }
        let j = i + (m.trailing_zeros() / 8) as usize;
        if STRUCTURAL[b[j] as usize] {
            return j;
        }
        i = j + 1;
    }
    while i < b.len() && !STRUCTURAL[b[i] as usize] {
        i += 1;
    }
    i.min(b.len())
}

/// Bytes that open or close strings, objects and arrays.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn valid_number(t: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > s
    };
    if t.get(i) == Some(&b'-') {
        i += 1;
    }
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if let Some(b'e' | b'E') = t.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = t.get(i) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_structural_finds_what_a_byte_loop_finds() {
        let text = br#"12345678901234567890.5,-1e9 Yy_ true, false , null: [ {x} ] "s" tail without any"#;
        for start in 0..text.len() {
            let want = (start..text.len()).find(|&k| STRUCTURAL[text[k] as usize]).unwrap_or(text.len());
            assert_eq!(next_structural(text, start), want, "from {start}");
        }
        let all: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        for start in 0..all.len() {
            let want = (start..all.len()).find(|&k| STRUCTURAL[all[k] as usize]).unwrap_or(all.len());
            assert_eq!(next_structural(&all, start), want, "from {start}");
        }
    }

    #[test]
    fn strings_numbers_and_skips() {
        let mut s = Scanner::new(br#""a\"b\u00e9\ud83d\ude00""#);
        assert_eq!(s.string().unwrap(), "a\"bé😀");
        let mut s = Scanner::new(b"-12.5e1");
        assert_eq!(s.number().unwrap(), -125.0);
        for bad in [&b"01"[..], b"1.", b"-", b".5", b"1e"] {
            assert!(Scanner::new(bad).number().is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut s = Scanner::new(br#"{"a": [1, "x]}", {"b": "\""}]} tail"#);
        s.skip_value().unwrap();
        assert_eq!(&s.b[s.i..], b" tail");
        assert!(Scanner::new(b"\"unterminated").string().is_err());
        assert!(Scanner::new(b"\"\\ud83d\"").string().is_err(), "a lone surrogate");
    }
}
