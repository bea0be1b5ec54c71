//! `magpie pattern test` and `magpie pattern match`, both offline.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use magpie_pattern::{Matcher, Pattern};
use serde_json::{Map, Value};

use crate::{Exit, invalid};

pub(crate) fn read_json(path: &Path, what: &str) -> Result<Value, Exit> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} {}", path.display()))
        .map_err(invalid)?;
    // Read as strictly as the server reads bodies (a duplicate key, a number no double holds).
    magpie_core::json::parse_clean(text.as_bytes()).map_err(|e| invalid(anyhow!("the {what} {}: {e}", path.display())))
}

/// `magpie pattern test`: exit 0 on match, 1 on no match, 2 when the pattern or event is invalid.
pub fn test(pattern: &Path, event: &Path) -> Result<u8, Exit> {
    let p = read_json(pattern, "pattern")?;
    let p = Pattern::parse(&p).map_err(|e| invalid(anyhow!("invalid pattern: {e}")))?;
    let e = read_json(event, "event")?;
    if !e.is_object() {
        return Err(invalid(anyhow!("the event {} must be a JSON object", event.display())));
    }
    if p.matches(&e) {
        println!("match");
        Ok(0)
    } else {
        println!("no match");
        Ok(1)
    }
}

/// Opens an events file, decompressing `.gz`.
pub fn open_events(path: &Path) -> Result<Box<dyn BufRead>, Exit> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display())).map_err(invalid)?;
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, r)))
}

/// `magpie pattern match`: `{rule: number of events matched}` on stdout, throughput on stderr.
pub fn match_file(rules: &Path, events: &Path) -> Result<u8, Exit> {
    let rules_json = read_json(rules, "rules file")?;
    let Value::Object(rules_obj) = rules_json else {
        return Err(invalid(anyhow!("{}: expected a JSON object {{rule name: pattern}}", rules.display())));
    };
    let mut names = Vec::with_capacity(rules_obj.len());
    let mut patterns = Vec::with_capacity(rules_obj.len());
    for (i, (name, p)) in rules_obj.iter().enumerate() {
        let p = Pattern::parse(p).map_err(|e| invalid(anyhow!("rule {name:?}: {e}")))?;
        names.push(name.clone());
        patterns.push((i, p));
    }
    let matcher = Matcher::build(patterns);
    let mut counts = vec![0u64; names.len()];
    let mut reader = open_events(events)?;
    let (mut n, mut bad) = (0u64, 0u64);
    let mut line = Vec::new();
    let mut hits = Vec::new();
    let started = Instant::now();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).with_context(|| format!("reading {}", events.display()))?;
        if read == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        hits.clear();
        // The scanner reads only the fields the rules name; a line it cannot read is skipped.
        match matcher.matches_json(&line, &mut hits) {
            Ok(()) => {
                n += 1;
                for &i in &hits {
                    counts[i] += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let out: Map<String, Value> = names.into_iter().zip(counts).map(|(k, c)| (k, Value::from(c))).collect();
    println!("{}", Value::Object(out));
    eprintln!(
        "{n} events in {secs:.3} s: {:.0} events/s{}",
        n as f64 / secs.max(1e-9),
        if bad > 0 { format!(" ({bad} lines could not be read as JSON and were skipped)") } else { String::new() }
    );
    Ok(0)
}
