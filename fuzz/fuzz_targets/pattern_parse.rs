//! Any bytes as a pattern: parsing either refuses with an error or yields a pattern that can be
//! matched and compiled. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magpie_pattern::{Matcher, Pattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Pattern::parse_str(text) {
        let event = serde_json::json!({"a": "x", "b": [1, {"c": null}], "source": "cvm.cloud.tencent"});
        let expected = p.matches(&event);
        let m = Matcher::build([(0u8, p)]);
        let mut out = Vec::new();
        m.matches(&event, &mut out);
        assert_eq!(!out.is_empty(), expected, "compiled and interpreted disagree");
    }
});
