//! Many rules at once, at a cost that follows the event's fields, not the number of rules.
//!
//! Every rule is flattened into sub-rules (its `$or`s multiplied out), each a set of conditions
//! on paths; identical conditions are shared between rules. A path trie holds the paths rules
//! name, so the event walk visits only those fields and skips the rest. Each path's values go
//! through a [`FieldIndex`] (hash lookups) and mark the conditions they satisfy (epoch stamps, so
//! nothing is cleared between events). Each sub-rule is anchored at its least-shared condition:
//! after the walk, only sub-rules whose anchor fired are checked, so a condition common to
//! thousands of rules costs nothing unless their own anchors fire too.
//!
//! Two cases are handed to the reference interpreter, for exactness: rules using `exists: false`
//! or Tencent's `array` operator, and candidates whose conditions were satisfied inside arrays
//! (where the fields of one array element must match together).

use std::cell::RefCell;

use rustc_hash::FxHashMap as HashMap;

use serde_json::Value;

use crate::ast::{FieldPattern, Leaf, ObjPattern, Pattern};
use crate::index::{CondId, FieldIndex, Val};
use crate::scan::{ScanError, Scanner};

/// Most sub-rules one rule may expand into before it is interpreted instead.
const MAX_SUBRULES_PER_RULE: usize = 256;

/// Children up to this many are searched linearly (faster than hashing short keys).
const LINEAR_CHILDREN: usize = 8;

#[derive(Debug, Default)]
struct Node {
    /// Child names and nodes, in insertion order (their position is their bit in `scan`'s mask).
    keys: Vec<(Box<[u8]>, u32)>,
    /// The same, hashed, for nodes with many children.
    map: HashMap<Box<[u8]>, u32>,
    field: Option<u32>,
}

impl Node {
    /// The child called `key`: its position among the children and its node.
    #[inline]
    fn child(&self, key: &[u8]) -> Option<(usize, u32)> {
        if self.keys.len() <= LINEAR_CHILDREN {
            self.keys.iter().position(|(k, _)| **k == *key).map(|i| (i, self.keys[i].1))
        } else {
            let n = *self.map.get(key)?;
            self.keys.iter().position(|(_, c)| *c == n).map(|i| (i, n))
        }
    }

    fn insert(&mut self, key: Box<[u8]>, node: u32) {
        self.map.insert(key.clone(), node);
        self.keys.push((key, node));
    }
}

#[derive(Debug)]
struct SubRule {
    rule: u32,
    conds: Box<[CondId]>,
}

/// The rules of one bus, compiled.
#[derive(Debug)]
pub struct Matcher<Id> {
    ids: Vec<Id>,
    patterns: Vec<Pattern>,
    nodes: Vec<Node>,
    fields: Vec<FieldIndex>,
    /// Per condition: the sub-rules that condition anchors (each sub-rule is anchored at its
    /// least-shared condition, so a common condition wakes few sub-rules).
    anchored: Vec<Vec<u32>>,
    subrules: Vec<SubRule>,
    interpreted: Vec<u32>,
}

/// Per-thread working memory of a match, reused across events.
#[derive(Default)]
struct Scratch {
    epoch: u32,
    cond_seen: Vec<u32>,
    cond_in_array: Vec<bool>,
    fired: Vec<CondId>,
    rule_epoch: Vec<u32>,
    verify_epoch: Vec<u32>,
    hits: Vec<CondId>,
    lower: String,
    matched: Vec<u32>,
    verify: Vec<u32>,
    /// Whether the document being scanned may have dotted keys (see `Matcher::matches_json`).
    dotted: bool,
}

impl Scratch {
    fn begin(&mut self, conds: usize, rules: usize) {
        if self.epoch == u32::MAX {
            *self = Scratch::default();
        }
        self.epoch += 1;
        if self.cond_seen.len() < conds {
            self.cond_seen.resize(conds, 0);
            self.cond_in_array.resize(conds, false);
        }
        if self.rule_epoch.len() < rules {
            self.rule_epoch.resize(rules, 0);
            self.verify_epoch.resize(rules, 0);
        }
        self.matched.clear();
        self.verify.clear();
        self.fired.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Whether the rule must be interpreted: `exists: false` (absence inside array elements) and
/// `array` (a sub-pattern over whole elements) are not indexed.
fn needs_interpreter(p: &ObjPattern) -> bool {
    p.fields.iter().any(|(_, f)| match f {
        FieldPattern::Nested(o) => needs_interpreter(o),
        FieldPattern::Leaf(leaves) => leaves.iter().any(|l| matches!(l, Leaf::Exists(false) | Leaf::Array(_))),
    }) || p.ors.iter().flatten().any(needs_interpreter)
}

type Conj<'a> = Vec<(Vec<&'a str>, &'a [Leaf])>;

/// The pattern as an OR of ANDs of (path, alternatives); None when it grows too large.
fn dnf<'a>(p: &'a ObjPattern, prefix: &[&'a str]) -> Option<Vec<Conj<'a>>> {
    let mut out: Vec<Conj<'a>> = vec![Vec::new()];
    let product = |a: Vec<Conj<'a>>, b: Vec<Conj<'a>>| -> Option<Vec<Conj<'a>>> {
        if a.len().saturating_mul(b.len()) > MAX_SUBRULES_PER_RULE {
            return None;
        }
        Some(a.iter().flat_map(|x| b.iter().map(move |y| x.iter().chain(y).cloned().collect())).collect())
    };
    for (k, f) in &p.fields {
        let mut path = prefix.to_vec();
        path.push(k.as_str());
        match f {
            FieldPattern::Leaf(leaves) => out.iter_mut().for_each(|c| c.push((path.clone(), leaves.as_slice()))),
            FieldPattern::Nested(o) => out = product(out, dnf(o, &path)?)?,
        }
    }
    for branches in &p.ors {
        let mut alts = Vec::new();
        for b in branches {
            alts.extend(dnf(b, prefix)?);
            if alts.len() > MAX_SUBRULES_PER_RULE {
                return None;
            }
        }
        out = product(out, alts)?;
    }
    Some(out)
}

impl<Id: Clone> Matcher<Id> {
    /// Compiles `(rule id, pattern)` pairs.
    pub fn build(rules: impl IntoIterator<Item = (Id, Pattern)>) -> Self {
        let mut m = Matcher {
            ids: Vec::new(),
            patterns: Vec::new(),
            nodes: vec![Node::default()],
            fields: Vec::new(),
            anchored: Vec::new(),
            subrules: Vec::new(),
            interpreted: Vec::new(),
        };
        let mut cond_keys: HashMap<(u32, String), CondId> = HashMap::default();
        for (ri, (id, p)) in rules.into_iter().enumerate() {
            let ri = ri as u32;
            let conjs = if needs_interpreter(&p.root) { None } else { dnf(&p.root, &[]) };
            match conjs {
                None => m.interpreted.push(ri),
                Some(conjs) => {
                    for conj in conjs {
                        let mut conds: Vec<CondId> = Vec::with_capacity(conj.len());
                        for (path, leaves) in conj {
                            let field = m.field_for(&path);
                            let key = (field, format!("{leaves:?}"));
                            let cond = match cond_keys.get(&key) {
                                Some(c) => *c,
                                None => {
                                    let c = m.anchored.len() as CondId;
                                    m.anchored.push(Vec::new());
                                    for leaf in leaves {
                                        m.fields[field as usize].add(leaf, c);
                                    }
                                    cond_keys.insert(key, c);
                                    c
                                }
                            };
                            if !conds.contains(&cond) {
                                conds.push(cond);
                            }
                        }
                        m.subrules.push(SubRule { rule: ri, conds: conds.into_boxed_slice() });
                    }
                }
            }
            m.ids.push(id);
            m.patterns.push(p);
        }
        m.fields.iter_mut().for_each(FieldIndex::finish);
        // Anchor each sub-rule at its least-shared condition.
        let mut uses = vec![0u32; m.anchored.len()];
        for sr in &m.subrules {
            sr.conds.iter().for_each(|&c| uses[c as usize] += 1);
        }
        for (i, sr) in m.subrules.iter().enumerate() {
            if let Some(&anchor) = sr.conds.iter().min_by_key(|&&c| uses[c as usize]) {
                m.anchored[anchor as usize].push(i as u32);
            }
        }
        m
    }

    fn field_for(&mut self, path: &[&str]) -> u32 {
        let mut node = 0usize;
        for seg in path {
            let key: Box<[u8]> = seg.as_bytes().into();
            node = match self.nodes[node].child(&key) {
                Some((_, n)) => n as usize,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].insert(key, n as u32);
                    n
                }
            };
        }
        match self.nodes[node].field {
            Some(f) => f,
            None => {
                let f = self.fields.len() as u32;
                self.fields.push(FieldIndex::default());
                self.nodes[node].field = Some(f);
                f
            }
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends to `out` the id of every rule `event` matches, in the order the rules were given.
    pub fn matches(&self, event: &Value, out: &mut Vec<Id>) {
        SCRATCH.with(|s| {
            let st = &mut *s.borrow_mut();
            st.begin(self.anchored.len(), self.ids.len());
            if let Value::Object(o) = event {
                for (k, v) in o {
                    if let Some(n) = self.descend(0, k.as_bytes()) {
                        self.walk(n, v, false, st);
                    }
                }
            }
            self.finish(st, || Some(event.clone()), out);
        });
    }

    /// Like [`Matcher::matches`], reading the event from JSON text without building a tree:
    /// fields that no rule names are skipped as they are scanned. Only what is read is
    /// validated; a syntax error in what is read is an error.
    pub fn matches_json(&self, json: &[u8], out: &mut Vec<Id>) -> Result<(), ScanError> {
        self.scan_json(json, true, out)
    }

    /// [`Matcher::matches_json`] for a document known to have no dotted key (`"a.b": 1`; ingest
    /// records it per event): reading stops as soon as every field the rules name has been read,
    /// which a dotted key further on could otherwise still add to.
    pub fn matches_json_undotted(&self, json: &[u8], out: &mut Vec<Id>) -> Result<(), ScanError> {
        self.scan_json(json, false, out)
    }

    fn scan_json(&self, json: &[u8], dotted: bool, out: &mut Vec<Id>) -> Result<(), ScanError> {
        SCRATCH.with(|s| {
            let st = &mut *s.borrow_mut();
            st.begin(self.anchored.len(), self.ids.len());
            st.dotted = dotted;
            let mut sc = Scanner::new(json);
            self.scan_top(&mut sc, dotted, st)?;
            self.finish(st, || serde_json::from_slice(json).ok(), out);
            Ok(())
        })
    }

    fn walk(&self, node: u32, v: &Value, in_array: bool, st: &mut Scratch) {
        let n = &self.nodes[node as usize];
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.walk(node, i, true, st)),
            Value::Object(o) => {
                if !n.keys.is_empty() {
                    for (k, v) in o {
                        if let Some(c) = self.descend(node, k.as_bytes()) {
                            self.walk(c, v, in_array, st);
                        }
                    }
                }
            }
            scalar => {
                if let Some(f) = n.field {
                    let val = match scalar {
                        Value::Null => Val::Null,
                        Value::Bool(b) => Val::Bool(*b),
                        Value::Number(x) => match x.as_f64() {
                            Some(x) => Val::Num(x),
                            None => return,
                        },
                        Value::String(s) => Val::Str(s),
                        _ => return,
                    };
                    self.hit(f, val, in_array, st);
                }
            }
        }
    }

    /// The trie node an event key leads to from `node`: its child of that name, or, for a dotted
    /// key (`"state.status"`), the node its segments lead to (AWS reads a dotted key as the
    /// nested field it names). Rules' field names never hold a dot (the parser splits them).
    #[inline]
    fn descend(&self, node: u32, key: &[u8]) -> Option<u32> {
        if let Some((_, c)) = self.nodes[node as usize].child(key) {
            return Some(c);
        }
        if !key.contains(&b'.') {
            return None;
        }
        key.split(|&b| b == b'.').try_fold(node, |n, seg| self.nodes[n as usize].child(seg).map(|(_, c)| c))
    }

    fn scan_top(&self, sc: &mut Scanner<'_>, dotted: bool, st: &mut Scratch) -> Result<(), ScanError> {
        sc.skip_ws();
        if sc.peek() != Some(b'{') {
            // Not an object: only interpreted rules (which see it whole) may match.
            return sc.skip_value();
        }
        // With dotted keys, reading never stops early (`last` is never set).
        self.scan(sc, 0, false, 0, !dotted, st).map(|_| ())
    }

    /// Reads one value at trie node `node`. With `last`, nothing after this value is needed:
    /// returns `Ok(true)` as soon as everything the rules name has been read, without reading
    /// the rest of the document.
    fn scan(
        &self,
        sc: &mut Scanner<'_>,
        node: u32,
        in_array: bool,
        depth: usize,
        last: bool,
        st: &mut Scratch,
    ) -> Result<bool, ScanError> {
        let dotted = st.dotted;
        if depth > crate::scan::MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        let n = &self.nodes[node as usize];
        sc.skip_ws();
        match sc.peek() {
            Some(b'{') => {
                if n.keys.is_empty() {
                    sc.skip_value()?;
                    return Ok(last);
                }
                // Which children were read, to stop once all were (up to 64 children).
                let all: u64 = if n.keys.len() < 64 { (1u64 << n.keys.len()) - 1 } else { 0 };
                let mut seen: u64 = 0;
                sc.bump();
                sc.skip_ws();
                if sc.peek() == Some(b'}') {
                    sc.bump();
                    return Ok(last);
                }
                loop {
                    sc.skip_ws();
                    let key = sc.key()?;
                    sc.skip_ws();
                    sc.expect(b':')?;
                    match n.child(&key) {
                        Some((i, c)) => {
                            if i < 64 {
                                seen |= 1 << i;
                            }
                            let final_child = last && all != 0 && seen == all;
                            if self.scan(sc, c, in_array, depth + 1, final_child, st)? {
                                return Ok(true);
                            }
                        }
                        None => match if dotted { self.descend(node, &key) } else { None } {
                            Some(c) => {
                                self.scan(sc, c, in_array, depth + 1, false, st)?;
                            }
                            None => {
                                sc.skip_ws();
                                sc.skip_value()?
                            }
                        },
                    }
                    sc.skip_ws();
                    match sc.next() {
                        Some(b',') => continue,
                        Some(b'}') => return Ok(last),
                        _ => return Err(sc.error()),
                    }
                }
            }
            Some(b'[') => {
                sc.bump();
                sc.skip_ws();
                if sc.peek() == Some(b']') {
                    sc.bump();
                    return Ok(last);
                }
                loop {
                    self.scan(sc, node, true, depth + 1, false, st)?;
                    sc.skip_ws();
                    match sc.next() {
                        Some(b',') => continue,
                        Some(b']') => return Ok(last),
                        _ => return Err(sc.error()),
                    }
                }
            }
            Some(_) => match n.field {
                None => sc.skip_value().map(|()| last),
                Some(f) => {
                    match sc.peek() {
                        Some(b'"') => {
                            let s = sc.string()?;
                            self.hit(f, Val::Str(&s), in_array, st);
                        }
                        Some(b't') => {
                            sc.literal(b"true")?;
                            self.hit(f, Val::Bool(true), in_array, st);
                        }
                        Some(b'f') => {
                            sc.literal(b"false")?;
                            self.hit(f, Val::Bool(false), in_array, st);
                        }
                        Some(b'n') => {
                            sc.literal(b"null")?;
                            self.hit(f, Val::Null, in_array, st);
                        }
                        _ => {
                            let x = sc.number()?;
                            self.hit(f, Val::Num(x), in_array, st);
                        }
                    }
                    Ok(last)
                }
            },
            None => Err(sc.error()),
        }
    }

    fn hit(&self, field: u32, v: Val<'_>, in_array: bool, st: &mut Scratch) {
        let mut hits = std::mem::take(&mut st.hits);
        hits.clear();
        self.fields[field as usize].lookup(v, &mut hits, &mut st.lower);
        let epoch = st.epoch;
        for &c in &hits {
            let ci = c as usize;
            if st.cond_seen[ci] == epoch {
                st.cond_in_array[ci] |= in_array;
                continue;
            }
            st.cond_seen[ci] = epoch;
            st.cond_in_array[ci] = in_array;
            if !self.anchored[ci].is_empty() {
                st.fired.push(c);
            }
        }
        st.hits = hits;
    }

    /// After the walk: every sub-rule anchored at a fired condition matches when all its other
    /// conditions fired too.
    fn complete(&self, st: &mut Scratch) {
        let epoch = st.epoch;
        for &c in &st.fired {
            for &sr in &self.anchored[c as usize] {
                let sub = &self.subrules[sr as usize];
                let rule = sub.rule as usize;
                if st.rule_epoch[rule] == epoch || !sub.conds.iter().all(|&c| st.cond_seen[c as usize] == epoch) {
                    continue;
                }
                let in_arrays = sub.conds.iter().filter(|&&c| st.cond_in_array[c as usize]).count();
                if in_arrays >= 2 {
                    if st.verify_epoch[rule] != epoch {
                        st.verify_epoch[rule] = epoch;
                        st.verify.push(sub.rule);
                    }
                } else {
                    st.rule_epoch[rule] = epoch;
                    st.matched.push(sub.rule);
                }
            }
        }
    }

    fn finish(&self, st: &mut Scratch, event: impl FnOnce() -> Option<Value>, out: &mut Vec<Id>) {
        self.complete(st);
        let epoch = st.epoch;
        let pending: Vec<u32> = st.verify.iter().copied().filter(|&r| st.rule_epoch[r as usize] != epoch).collect();
        if (!pending.is_empty() || !self.interpreted.is_empty())
            && let Some(event) = event()
        {
            for r in pending.into_iter().chain(self.interpreted.iter().copied()) {
                if self.patterns[r as usize].matches(&event) {
                    st.matched.push(r);
                }
            }
        }
        st.matched.sort_unstable();
        st.matched.dedup();
        out.extend(st.matched.iter().map(|&r| self.ids[r as usize].clone()));
    }
}
