//! How matching scales with the number of rules: 10, 100, 1,000 and 10,000 rules of mixed
//! operators over Tencent-style cloud alarm events. Single thread; events in memory as JSON text.
//!
//! ```sh
//! python3 ../shared/bench-data/gen.py cloud-events -n 100000 -o target/bench/cloud-events.jsonl.gz
//! cargo bench -p magpie-pattern --bench scaling
//! ```
//!
//! The rules are generated deterministically from values found in the events, so they match:
//! exact `type` (+ `region`), `prefix`/`suffix` on `subject`, `equals-ignore-case` on `region`
//! (+ exact `source`), `wildcard` on `type`, `numeric` time windows, `cidr` blocks on
//! `data.dimensions.ip`, and `anything-but` on `status` with an exact team tag.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use magpie_pattern::{Matcher, Pattern};
use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.next() % v.len()]
    }
}

fn load(path: &str) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}\ngenerate it with: python3 ../shared/bench-data/gen.py cloud-events -n 100000 -o {path}");
        std::process::exit(0)
    });
    let reader: Box<dyn std::io::Read> =
        if path.ends_with(".gz") { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    BufReader::with_capacity(1 << 20, reader).split(b'\n').map_while(Result::ok).filter(|l| !l.is_empty()).collect()
}

/// Selective rules: about one resource or a narrow slice each, as routing rules usually are.
fn selective(n: usize, sample: &[Value]) -> Vec<Value> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| {
            let e = rng.pick(sample);
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let subject = s("subject");
            match i % 10 {
                0..=2 => json!({"type": [s("type")], "subject": [subject]}),
                3 => json!({"subject": [{"prefix": subject.get(..8).unwrap_or(&subject)}], "status": ["1"]}),
                4 => json!({"subject": [{"suffix": subject.get(subject.len().saturating_sub(5)..).unwrap_or("")}], "source": [s("source")]}),
                5 => json!({"region": [{"equals-ignore-case": s("region").to_uppercase()}], "subject": [subject]}),
                6 => {
                    let t = s("type");
                    let (product, name) = (t.split(':').next().unwrap_or(""), t.rsplit(':').next().unwrap_or(""));
                    json!({"type": [{"wildcard": format!("{product}:*:{name}")}], "subject": [subject]})
                }
                7 => {
                    let t = e["time"].as_i64().unwrap_or(0);
                    json!({"time": [{"numeric": [">=", t, "<", t + 1_000]}], "region": [s("region")]})
                }
                8 => {
                    let ip = e["data"]["dimensions"]["ip"].as_str().unwrap_or("10.0.0.1");
                    json!({"data": {"dimensions": {"ip": [{"cidr": format!("{ip}/30")}]}}})
                }
                _ => json!({"status": [{"anything-but": ["0"]}], "subject": [subject]}),
            }
        })
        .collect()
}

/// Broad rules: each matches a large share of events, so the matches per event grow with the
/// number of rules.
fn broad(n: usize, sample: &[Value]) -> Vec<Value> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let e = rng.pick(sample);
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let subject = s("subject");
            match i % 10 {
                0..=2 => json!({"type": [s("type")], "region": [s("region")]}),
                3 => json!({"subject": [{"prefix": subject.get(..6).unwrap_or(&subject)}]}),
                4 => json!({"subject": [{"suffix": subject.get(subject.len().saturating_sub(3)..).unwrap_or("")}], "source": [s("source")]}),
                5 => json!({"region": [{"equals-ignore-case": s("region").to_uppercase()}], "source": [s("source")]}),
                6 => {
                    let t = s("type");
                    let (product, name) = (t.split(':').next().unwrap_or(""), t.rsplit(':').next().unwrap_or(""));
                    json!({"type": [{"wildcard": format!("{product}:*:{name}")}]})
                }
                7 => {
                    let t = e["time"].as_i64().unwrap_or(0);
                    json!({"time": [{"numeric": [">=", t, "<", t + 1_000 + (rng.next() % 60_000) as i64]}]})
                }
                8 => {
                    let ip = e["data"]["dimensions"]["ip"].as_str().unwrap_or("10.0.0.1");
                    let net: Vec<&str> = ip.split('.').take(3).collect();
                    json!({"data": {"dimensions": {"ip": [{"cidr": format!("{}.0/24", net.join("."))}]}}})
                }
                _ => json!({"status": [{"anything-but": ["0"]}], "tags": {"team": [e["tags"]["team"].clone()]}, "type": [s("type")]}),
            }
        })
        .collect()
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench/cloud-events.jsonl.gz");
    let path = std::env::var("MAGPIE_BENCH_EVENTS").unwrap_or_else(|_| root.to_string());
    let passes: usize = std::env::var("MAGPIE_BENCH_PASSES").ok().and_then(|p| p.parse().ok()).unwrap_or(3);
    let events = load(&path);
    let sample: Vec<Value> = events.iter().take(5_000).filter_map(|e| serde_json::from_slice(e).ok()).collect();
    println!("cloud-events: {} events from {path}; best of {passes} passes, one thread", events.len());
    for (mix, generate) in [("selective", selective as fn(usize, &[Value]) -> Vec<Value>), ("broad", broad)] {
        println!("\n{mix} rules\n");
        run(&events, &sample, passes, generate);
    }
}

fn run(events: &[Vec<u8>], sample: &[Value], passes: usize, generate: fn(usize, &[Value]) -> Vec<Value>) {
    println!("| rules | build ms | events/s | matches per event | vs 10 rules |");
    println!("|---:|---:|---:|---:|---:|");
    let mut base = 0.0;
    for n in [10, 100, 1_000, 10_000] {
        let patterns: Vec<(usize, Pattern)> = generate(n, sample)
            .iter()
            .enumerate()
            .map(|(i, p)| (i, Pattern::parse(p).expect("valid pattern")))
            .collect();
        let started = Instant::now();
        let matcher = Matcher::build(patterns);
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut best = f64::MAX;
        let mut matched = 0usize;
        let mut out = Vec::new();
        for pass in 0..passes {
            let start = Instant::now();
            for e in events {
                out.clear();
                matcher.matches_json_undotted(e, &mut out).expect("valid event");
                if pass == 0 {
                    matched += out.len();
                }
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let eps = events.len() as f64 / best;
        if n == 10 {
            base = eps;
        }
        println!(
            "| {n} | {build_ms:.1} | {eps:.0} | {:.2} | {:.2} |",
            matched as f64 / events.len() as f64,
            eps / base
        );
    }
}
