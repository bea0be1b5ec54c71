//! Any bytes through Magpie's strict JSON reader (the front door of every body): it never panics,
//! and on a document serde_json reads too, with nothing refused, both read the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = magpie_core::json::parse(data);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &theirs) {
        (Ok(p), Ok(v)) if p.faults.is_empty() => assert_eq!(&p.value, v, "the two readers disagree"),
        // serde_json refuses lone surrogates and deep nesting, which are faults here, not errors.
        (Ok(p), Err(_)) => assert!(!p.faults.is_empty() || serde_json_refuses_depth(data), "serde_json refused a clean document"),
        (Err(e), Ok(_)) => panic!("a document serde_json reads was refused: {e}"),
        _ => {}
    }
});

/// serde_json's recursion limit is 128 levels, like ours; a document right at it may differ.
fn serde_json_refuses_depth(data: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &c in data {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max >= 127
}
