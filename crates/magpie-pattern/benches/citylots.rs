//! Matcher throughput on the citylots-shaped data set, rule set by rule set, side by side with the
//! `quamina` crate. Single thread; events are in memory as JSON text (parsing included, file
//! reading excluded).
//!
//! ```sh
//! python3 ../shared/bench-data/gen.py citylots -o target/bench/citylots.jsonl.gz
//! cargo bench -p magpie-pattern --bench citylots
//! ```
//!
//! `MAGPIE_BENCH_CITYLOTS` overrides the data path; `MAGPIE_BENCH_PASSES` the passes (best kept);
//! `MAGPIE_BENCH_EXACT=1` reads events as if they could hold dotted keys (no early stop);
//! `MAGPIE_BENCH_SETS=PREFIX,SUFFIX` runs only those sets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use magpie_pattern::{Matcher, Pattern};
use serde_json::Value;

/// The rule sets of `reference/patterns.md`.
const SETS: &[(&str, &str)] = &[
    (
        "EXACT",
        r#"{"r0": {"properties": {"MAPBLKLOT": ["1430022"]}}, "r1": {"properties": {"MAPBLKLOT": ["2607117"]}}, "r2": {"properties": {"MAPBLKLOT": ["2607218"]}}, "r3": {"properties": {"MAPBLKLOT": ["3745012"]}}, "r4": {"properties": {"MAPBLKLOT": ["VACSTWIL"]}}}"#,
    ),
    (
        "WILDCARD",
        r#"{"r0": {"properties": {"MAPBLKLOT": [{"wildcard": "143*"}]}}, "r1": {"properties": {"MAPBLKLOT": [{"wildcard": "2*0*1*7"}]}}, "r2": {"properties": {"MAPBLKLOT": [{"wildcard": "*218"}]}}, "r3": {"properties": {"MAPBLKLOT": [{"wildcard": "3*5*2"}]}}, "r4": {"properties": {"MAPBLKLOT": [{"wildcard": "VA*IL"}]}}}"#,
    ),
    (
        "PREFIX",
        r#"{"r0": {"properties": {"STREET": [{"prefix": "AC"}]}}, "r1": {"properties": {"STREET": [{"prefix": "BL"}]}}, "r2": {"properties": {"STREET": [{"prefix": "DR"}]}}, "r3": {"properties": {"STREET": [{"prefix": "FU"}]}}, "r4": {"properties": {"STREET": [{"prefix": "RH"}]}}}"#,
    ),
    (
        "PREFIX_EQUALS_IGNORE_CASE",
        r#"{"r0": {"properties": {"STREET": [{"prefix": {"equals-ignore-case": "Ac"}}]}}, "r1": {"properties": {"STREET": [{"prefix": {"equals-ignore-case": "bL"}}]}}, "r2": {"properties": {"STREET": [{"prefix": {"equals-ignore-case": "dR"}}]}}, "r3": {"properties": {"STREET": [{"prefix": {"equals-ignore-case": "Fu"}}]}}, "r4": {"properties": {"STREET": [{"prefix": {"equals-ignore-case": "rH"}}]}}}"#,
    ),
    (
        "SUFFIX",
        r#"{"r0": {"properties": {"STREET": [{"suffix": "ON"}]}}, "r1": {"properties": {"STREET": [{"suffix": "KE"}]}}, "r2": {"properties": {"STREET": [{"suffix": "MM"}]}}, "r3": {"properties": {"STREET": [{"suffix": "ING"}]}}, "r4": {"properties": {"STREET": [{"suffix": "GO"}]}}}"#,
    ),
    (
        "SUFFIX_EQUALS_IGNORE_CASE",
        r#"{"r0": {"properties": {"STREET": [{"suffix": {"equals-ignore-case": "oN"}}]}}, "r1": {"properties": {"STREET": [{"suffix": {"equals-ignore-case": "Ke"}}]}}, "r2": {"properties": {"STREET": [{"suffix": {"equals-ignore-case": "mM"}}]}}, "r3": {"properties": {"STREET": [{"suffix": {"equals-ignore-case": "InG"}}]}}, "r4": {"properties": {"STREET": [{"suffix": {"equals-ignore-case": "gO"}}]}}}"#,
    ),
    (
        "EQUALS_IGNORE_CASE",
        r#"{"r0": {"properties": {"STREET": [{"equals-ignore-case": "jefferson"}]}}, "r1": {"properties": {"STREET": [{"equals-ignore-case": "bEaCh"}]}}, "r2": {"properties": {"STREET": [{"equals-ignore-case": "HyDe"}]}}, "r3": {"properties": {"STREET": [{"equals-ignore-case": "CHESTNUT"}]}}, "r4": {"properties": {"ST_TYPE": [{"equals-ignore-case": "st"}]}}}"#,
    ),
    (
        "NUMERIC",
        r#"{"r0": {"geometry": {"type": ["Polygon"], "firstCoordinates": {"x": [{"numeric": ["=", -122.42916360922355]}]}}}, "r1": {"geometry": {"type": ["MultiPolygon"], "firstCoordinates": {"z": [{"numeric": ["=", 0]}]}}}, "r2": {"geometry": {"firstCoordinates": {"x": [{"numeric": ["<", -122.41600944012424]}]}}}, "r3": {"geometry": {"firstCoordinates": {"x": [{"numeric": [">", -122.41600944012424]}]}}}, "r4": {"geometry": {"firstCoordinates": {"x": [{"numeric": [">", -122.46471267081272, "<", -122.4063085128395]}]}}}}"#,
    ),
    (
        "COMPLEX_ARRAYS",
        r#"{"r0": {"geometry": {"type": ["Polygon"], "coordinates": {"x": [{"numeric": ["=", -122.42916360922355]}]}}}, "r1": {"geometry": {"type": ["MultiPolygon"], "coordinates": {"y": [{"numeric": ["=", 37.729900216217324]}]}}}, "r2": {"geometry": {"coordinates": {"x": [{"numeric": ["<", -122.41600944012424]}]}}}, "r3": {"geometry": {"coordinates": {"x": [{"numeric": [">", -122.41600944012424]}]}}}, "r4": {"geometry": {"coordinates": {"x": [{"numeric": [">", -122.46471267081272, "<", -122.4063085128395]}]}}}}"#,
    ),
    (
        "ANYTHING_BUT",
        r#"{"r0": {"properties": {"STREET": [{"anything-but": ["FULTON"]}]}}, "r1": {"properties": {"STREET": [{"anything-but": ["MASON"]}]}}, "r2": {"properties": {"ST_TYPE": [{"anything-but": ["ST"]}]}}, "r3": {"geometry": {"type": [{"anything-but": ["Polygon"]}]}}, "r4": {"properties": {"FROM_ST": [{"anything-but": ["441"]}]}}}"#,
    ),
    (
        "ANYTHING_BUT_IGNORE_CASE",
        r#"{"r0": {"properties": {"STREET": [{"anything-but": {"equals-ignore-case": ["Fulton"]}}]}}, "r1": {"properties": {"STREET": [{"anything-but": {"equals-ignore-case": ["Mason"]}}]}}, "r2": {"properties": {"ST_TYPE": [{"anything-but": {"equals-ignore-case": ["st"]}}]}}, "r3": {"geometry": {"type": [{"anything-but": {"equals-ignore-case": ["polygon"]}}]}}, "r4": {"properties": {"FROM_ST": [{"anything-but": {"equals-ignore-case": ["441"]}}]}}}"#,
    ),
    (
        "ANYTHING_BUT_PREFIX",
        r#"{"r0": {"properties": {"STREET": [{"anything-but": {"prefix": "FULTO"}}]}}, "r1": {"properties": {"STREET": [{"anything-but": {"prefix": "MASO"}}]}}, "r2": {"properties": {"ST_TYPE": [{"anything-but": {"prefix": "S"}}]}}, "r3": {"geometry": {"type": [{"anything-but": {"prefix": "Poly"}}]}}, "r4": {"properties": {"FROM_ST": [{"anything-but": {"prefix": "44"}}]}}}"#,
    ),
    (
        "ANYTHING_BUT_SUFFIX",
        r#"{"r0": {"properties": {"STREET": [{"anything-but": {"suffix": "ULTON"}}]}}, "r1": {"properties": {"STREET": [{"anything-but": {"suffix": "ASON"}}]}}, "r2": {"properties": {"ST_TYPE": [{"anything-but": {"suffix": "T"}}]}}, "r3": {"geometry": {"type": [{"anything-but": {"suffix": "olygon"}}]}}, "r4": {"properties": {"FROM_ST": [{"anything-but": {"suffix": "41"}}]}}}"#,
    ),
    (
        "ANYTHING_BUT_WILDCARD",
        r#"{"r0": {"properties": {"MAPBLKLOT": [{"anything-but": {"wildcard": "143*"}}]}}, "r1": {"properties": {"MAPBLKLOT": [{"anything-but": {"wildcard": "2*0*1*7"}}]}}, "r2": {"properties": {"MAPBLKLOT": [{"anything-but": {"wildcard": "*218"}}]}}, "r3": {"properties": {"MAPBLKLOT": [{"anything-but": {"wildcard": "3*5*2"}}]}}, "r4": {"properties": {"MAPBLKLOT": [{"anything-but": {"wildcard": "VA*IL"}}]}}}"#,
    ),
];

fn load(path: &str) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}\ngenerate it with: python3 ../shared/bench-data/gen.py citylots -o {path}");
        std::process::exit(0)
    });
    let reader: Box<dyn std::io::Read> =
        if path.ends_with(".gz") { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    BufReader::with_capacity(1 << 20, reader).split(b'\n').map_while(Result::ok).filter(|l| !l.is_empty()).collect()
}

/// Events per second of the best of `passes` passes, and the per-rule match counts.
fn measure(
    events: &[Vec<u8>],
    passes: usize,
    rules: usize,
    mut f: impl FnMut(&[u8], &mut Vec<usize>),
) -> (f64, Vec<u64>) {
    let mut best = f64::MAX;
    let mut counts = vec![0u64; rules];
    let mut hits = Vec::new();
    for pass in 0..passes {
        let start = Instant::now();
        for e in events {
            hits.clear();
            f(e, &mut hits);
            if pass == 0 {
                for &r in &hits {
                    counts[r] += 1;
                }
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    (events.len() as f64 / best, counts)
}

fn rules_of(set: &str) -> Vec<(String, Value)> {
    match serde_json::from_str::<Value>(set) {
        Ok(Value::Object(o)) => o.into_iter().collect(),
        _ => panic!("a rule set is a JSON object"),
    }
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench/citylots.jsonl.gz");
    let path = std::env::var("MAGPIE_BENCH_CITYLOTS").unwrap_or_else(|_| root.to_string());
    let passes: usize = std::env::var("MAGPIE_BENCH_PASSES").ok().and_then(|p| p.parse().ok()).unwrap_or(3);
    let exact = std::env::var("MAGPIE_BENCH_EXACT").is_ok_and(|v| v == "1");
    let events = load(&path);
    println!("citylots: {} events from {path}; best of {passes} passes, one thread\n", events.len());
    println!("| rule set | magpie events/s | magpie matches | quamina events/s | quamina matches | magpie / quamina |");
    println!("|---|---:|---:|---:|---:|---:|");

    let mut combo: Vec<(String, Value)> = Vec::new();
    let mut sets: Vec<(String, Vec<(String, Value)>)> =
        SETS.iter().map(|(n, s)| (n.to_string(), rules_of(s))).collect();
    for (name, rules) in &sets {
        if name != "COMPLEX_ARRAYS" {
            combo.extend(rules.iter().map(|(r, p)| (format!("{name}.{r}"), p.clone())));
        }
    }
    sets.push(("COMBO".into(), combo));
    if let Ok(only) = std::env::var("MAGPIE_BENCH_SETS") {
        let only: Vec<&str> = only.split(',').collect();
        sets.retain(|(n, _)| only.contains(&n.as_str()));
    }

    for (name, rules) in &sets {
        let compiled: Vec<(usize, Pattern)> =
            rules.iter().enumerate().map(|(i, (_, p))| (i, Pattern::parse(p).expect("valid pattern"))).collect();
        let matcher = Matcher::build(compiled);
        // The router reads events without dotted keys (ingest records it) with early stop; the
        // others, and `MAGPIE_BENCH_EXACT=1` here, read every byte.
        let (magpie_eps, magpie_counts) = measure(&events, passes, rules.len(), |e, out| {
            if exact { matcher.matches_json(e, out) } else { matcher.matches_json_undotted(e, out) }
                .expect("valid event");
        });
        let mut q = quamina::Quamina::<usize>::new();
        let supported = rules.iter().enumerate().all(|(i, (_, p))| q.add_pattern(i, &p.to_string()).is_ok());
        let total: u64 = magpie_counts.iter().sum();
        if supported {
            let (q_eps, q_counts) = measure(&events, passes, rules.len(), |e, out| {
                out.extend(q.matches_for_event(e).expect("quamina accepts the event"));
            });
            let same = if q_counts == magpie_counts { "" } else { " (counts differ!)" };
            let by_rule: HashMap<&str, (u64, u64)> = rules
                .iter()
                .zip(magpie_counts.iter().zip(&q_counts))
                .map(|((r, _), (a, b))| (r.as_str(), (*a, *b)))
                .collect();
            if !same.is_empty() {
                eprintln!("{name}: per-rule counts (magpie, quamina): {by_rule:?}");
            }
            let q_total: u64 = q_counts.iter().sum();
            println!(
                "| {name} | {magpie_eps:.0} | {total} | {q_eps:.0} | {q_total}{same} | {:.2}× |",
                magpie_eps / q_eps
            );
        } else {
            println!("| {name} | {magpie_eps:.0} | {total} | unsupported | – | – |");
        }
    }
}
