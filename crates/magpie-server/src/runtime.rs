//! The configuration in force, compiled: matchers per bus, compiled flows, connections.
//!
//! A [`Runtime`] is immutable; a change builds a new one off the hot path and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use magpie_core::config::{BusSpec, ConfigDocument, ConnectionSpec, FlowSpec, KnownNames, RuleSpec};
use magpie_core::{ConfigError, DEFAULT_BUS};
use magpie_flow::Flow;
use magpie_pattern::{Matcher, Pattern};
use magpie_store::{ConfigChange, Kind, Store};
use serde_json::Value;

use crate::error::ApiError;

pub mod audit;
mod versions;

pub use audit::{changes_of, masked_entry};
pub use versions::{FlowVersions, NoFlow, make_live};

/// The most the enabled rules of one bus may cost together, in indexed comparisons per event
/// (see [`Pattern::cost`]): one bus's rules cannot make routing slow.
pub const MAX_BUS_RULE_COST: u64 = 100_000;
/// The most the enabled rules of every bus may cost together.
pub const MAX_SERVER_RULE_COST: u64 = 1_000_000;

/// One compiled snapshot of the configuration.
#[derive(Default)]
pub struct Runtime {
    /// Buses by name (`default` always present).
    pub buses: BTreeMap<String, BusSpec>,
    /// Rules by bus, then name.
    pub rules: BTreeMap<String, BTreeMap<String, RuleSpec>>,
    /// Flows by name, with their compiled form.
    pub flows: BTreeMap<String, (FlowSpec, Arc<Flow>)>,
    /// Connections by name.
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// The matcher of each bus over its enabled rules (ids are rule names).
    pub matchers: HashMap<String, Matcher<String>>,
    /// Listen paths (`POST /hooks/{path}`) to the flows listening.
    pub hooks: HashMap<String, Hook>,
    /// Rules' own alert keys (`alert.key`), by bus, then rule.
    pub alert_keys: HashMap<String, HashMap<String, magpie_flow::expr::Lookups>>,
    /// The live version of each flow (jobs on another version load theirs from the store).
    pub versions: HashMap<String, i64>,
}

impl Runtime {
    /// Names of what exists, for reference checks.
    pub fn known(&self) -> KnownNames {
        KnownNames {
            buses: self.buses.keys().cloned().collect(),
            connections: self.connections.keys().cloned().collect(),
            flows: self.flows.keys().cloned().collect(),
        }
    }

    /// The whole configuration as one document.
    pub fn document(&self) -> ConfigDocument {
        ConfigDocument {
            buses: self
                .buses
                .values()
                .filter(|b| b.name != DEFAULT_BUS || !b.description.is_empty())
                .cloned()
                .collect(),
            connections: self.connections.values().cloned().collect(),
            flows: self.flows.values().map(|(s, _)| s.clone()).collect(),
            rules: self.rules.values().flat_map(|m| m.values().cloned()).collect(),
            ..ConfigDocument::default()
        }
    }
}

/// The shared, swappable runtime, with the server settings every change is held to: the
/// outbound policy and the key that seals secrets.
pub struct Shared {
    current: RwLock<Arc<Runtime>>,
    /// Where connections may send.
    pub egress: Arc<crate::egress::Egress>,
    /// Seals connections' secrets in the store.
    pub sealer: Arc<crate::secrets::Sealer>,
}

impl Shared {
    /// An empty runtime under these settings.
    pub fn new(egress: Arc<crate::egress::Egress>, sealer: Arc<crate::secrets::Sealer>) -> Shared {
        Shared { current: RwLock::default(), egress, sealer }
    }

    /// The runtime in force.
    pub fn get(&self) -> Arc<Runtime> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, rt: Runtime) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rt);
    }

    /// Rebuilds the runtime from the store.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), ApiError> {
        let doc = load_document(store, &self.sealer).await?;
        let mut rt = compile(&doc).map_err(|e| ApiError::internal(format!("stored configuration is invalid: {e}")))?;
        rt.versions = live_versions(store).await?;
        self.set(rt);
        Ok(())
    }
}

async fn load_document(store: &dyn Store, sealer: &crate::secrets::Sealer) -> Result<ConfigDocument, ApiError> {
    fn parse<T: serde::de::DeserializeOwned>(items: Vec<(String, Value)>) -> Result<Vec<T>, ApiError> {
        items
            .into_iter()
            .map(|(k, v)| {
                magpie_core::config::from_value(v).map_err(|e| ApiError::internal(format!("stored object {k}: {e}")))
            })
            .collect()
    }
    Ok(ConfigDocument {
        buses: parse(store.list_objects(Kind::Bus).await?)?,
        connections: parse(unseal_all(sealer, store.list_objects(Kind::Connection).await?)?)?,
        flows: parse(store.list_objects(Kind::Flow).await?)?,
        rules: parse(store.list_objects(Kind::Rule).await?)?,
        ..ConfigDocument::default()
    })
}

/// Stored connections with their secrets opened.
fn unseal_all(sealer: &crate::secrets::Sealer, items: Vec<(String, Value)>) -> Result<Vec<(String, Value)>, ApiError> {
    items
        .into_iter()
        .map(|(k, mut v)| {
            sealer.unseal_connection(&k, &mut v).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((k, v))
        })
        .collect()
}

/// A flow's listen path.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The flow it starts.
    pub flow: String,
    /// The subject of the events it stores (lookups over the request body), if configured.
    pub subject: Option<magpie_flow::expr::Lookups>,
}

/// Compiles a whole document (already validated for references).
fn compile(doc: &ConfigDocument) -> Result<Runtime, ConfigError> {
    let mut rt = Runtime::default();
    rt.buses.insert(DEFAULT_BUS.into(), BusSpec::new(DEFAULT_BUS, "云服务事件集: cloud-service events"));
    for b in &doc.buses {
        rt.buses.insert(b.name.clone(), b.clone());
    }
    for c in &doc.connections {
        rt.connections.insert(c.name.clone(), c.clone());
    }
    for (i, f) in doc.flows.iter().enumerate() {
        let flow = Flow::compile(f).map_err(|e| ConfigError::new(format!("flows[{i}].{}", e.path), e.reason))?;
        if let Some(path) = &f.trigger.path {
            let subject = match &f.trigger.subject {
                None => None,
                Some(t) => Some(magpie_flow::expr::Lookups::parse(t).ok_or_else(|| {
                    ConfigError::new(
                        format!("flows[{i}].trigger.subject"),
                        "only text and {{ payload.field }} lookups are allowed here (it is rendered as the request arrives)",
                    )
                })?),
            };
            rt.hooks.insert(path.clone(), Hook { flow: f.name.clone(), subject });
        } else if f.trigger.subject.is_some() {
            return Err(ConfigError::new(
                format!("flows[{i}].trigger.subject"),
                "a subject needs a listen path (trigger.path)",
            ));
        }
        rt.flows.insert(f.name.clone(), (f.clone(), Arc::new(flow)));
    }
    let mut patterns: HashMap<String, Vec<(String, Pattern)>> = HashMap::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let p = Pattern::parse(&r.pattern).map_err(|e| pattern_error(i, e))?;
        if r.enabled {
            patterns.entry(r.bus.clone()).or_default().push((r.name.clone(), p));
        }
        if let Some(key) = r.alert.as_ref().and_then(|a| a.key.as_deref()) {
            let lookups = magpie_flow::expr::Lookups::parse(key).ok_or_else(|| {
                ConfigError::new(
                    format!("rules[{i}].alert.key"),
                    "only text and {{ payload.field }} lookups are allowed here (it is rendered as events are routed)",
                )
            })?;
            rt.alert_keys.entry(r.bus.clone()).or_default().insert(r.name.clone(), lookups);
        }
        rt.rules.entry(r.bus.clone()).or_default().insert(r.name.clone(), r.clone());
    }
    rt.matchers = patterns.into_iter().map(|(bus, ps)| (bus, Matcher::build(ps))).collect();
    Ok(rt)
}

/// Checks `doc` against what is stored and, if it is sound, stores it and swaps the runtime in
/// (see [`check`]).
///
/// Objects are created or replaced; nothing absent from `doc` is deleted. With `deletes`, the
/// listed objects are removed in the same transaction.
pub async fn apply(
    shared: &Shared,
    store: &dyn Store,
    doc: ConfigDocument,
    deletes: Vec<(Kind, String)>,
    mode: FlowWrite,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    who: &str,
) -> Result<(), ApiError> {
    let entries = changes_of(&shared.get(), store, &doc, &deletes, mode, who).await?;
    let (mut rt, mut changes) = check(shared, store, doc, deletes, mode, env).await?;
    changes.extend(entries.into_iter().map(ConfigChange::Audit));
    store.apply_config(changes).await?;
    rt.versions = live_versions(store).await?;
    shared.set(rt);
    Ok(())
}

/// Everything [`apply`] checks, without storing anything: the runtime the change would make
/// and the store changes it would write (`magpie apply --dry-run`).
pub async fn check(
    shared: &Shared,
    store: &dyn Store,
    doc: ConfigDocument,
    deletes: Vec<(Kind, String)>,
    mode: FlowWrite,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<(Runtime, Vec<ConfigChange>), ApiError> {
    let current = shared.get();
    let mut merged = current.document();
    for (kind, key) in &deletes {
        remove(&mut merged, *kind, key);
    }
    // Validate the new objects against everything that will exist afterwards. Rules may target
    // published flows only: drafts are not among the known flows.
    let mut known = merged_known(&merged);
    known.buses.extend(doc.buses.iter().map(|b| b.name.clone()));
    known.connections.extend(doc.connections.iter().map(|c| c.name.clone()));
    if mode != FlowWrite::Draft {
        known.flows.extend(doc.flows.iter().map(|f| f.name.clone()));
    }
    refuse_unpublished_targets(store, &doc, &known).await?;
    doc.validate(&known).map_err(ApiError::config)?;
    // Patterns and expressions are checked here, so their errors carry the document's own paths.
    for (i, r) in doc.rules.iter().enumerate() {
        Pattern::parse(&r.pattern).map_err(|e| ApiError::config(pattern_error(i, e)))?;
        if let Some(key) = r.alert.as_ref().and_then(|a| a.key.as_deref())
            && magpie_flow::expr::Lookups::parse(key).is_none()
        {
            return Err(ApiError::config(ConfigError::new(
                format!("rules[{i}].alert.key"),
                "only text and {{ payload.field }} lookups are allowed here (it is rendered as events are routed)",
            )));
        }
    }
    for (i, f) in doc.flows.iter().enumerate() {
        Flow::compile(f).map_err(|e| ApiError::config(ConfigError::new(format!("flows[{i}].{}", e.path), e.reason)))?;
    }
    if doc.auth.is_some() || doc.outbound.is_some() {
        let field = if doc.auth.is_some() { "auth" } else { "outbound" };
        return Err(ApiError::config(ConfigError::new(
            field,
            "a server setting: it is read from the file given to `magpie serve --config` at start, not applied through the API",
        )));
    }
    for (i, c) in doc.connections.iter().enumerate() {
        let at = format!("connections[{i}]");
        check_secrets(c, &at, env)?;
        let webhook = magpie_core::env::resolve(&c.webhook, env).unwrap_or_default();
        shared.egress.check_url(&webhook).map_err(|r| {
            ApiError::config(ConfigError::new(format!("{at}.webhook"), format!("outbound policy: {r}")))
        })?;
    }
    let mut changes = Vec::new();
    for b in &doc.buses {
        upsert(&mut merged.buses, b.clone(), |x| x.name == b.name);
        changes.push(put(Kind::Bus, b.name.clone(), b)?);
    }
    for c in &doc.connections {
        upsert(&mut merged.connections, c.clone(), |x| x.name == c.name);
        let mut body = serde_json::to_value(c).map_err(|e| ApiError::internal(e.to_string()))?;
        shared.sealer.seal_connection(&c.name, &mut body).map_err(|e| ApiError::internal(e.to_string()))?;
        changes.push(ConfigChange::Put { kind: Kind::Connection, key: c.name.clone(), body });
    }
    for f in &doc.flows {
        match mode {
            FlowWrite::Publish => {
                upsert(&mut merged.flows, f.clone(), |x| x.name == f.name);
                changes.push(put(Kind::Flow, f.name.clone(), f)?);
            }
            FlowWrite::Draft => {
                let body = serde_json::to_value(f).map_err(|e| ApiError::internal(e.to_string()))?;
                changes.push(ConfigChange::Draft { name: f.name.clone(), body });
            }
            FlowWrite::Version(version) => {
                upsert(&mut merged.flows, f.clone(), |x| x.name == f.name);
                changes.push(ConfigChange::Publish { name: f.name.clone(), version });
            }
        }
    }
    for r in &doc.rules {
        upsert(&mut merged.rules, r.clone(), |x| x.name == r.name && x.bus == r.bus);
        changes.push(put(Kind::Rule, rule_key(&r.bus, &r.name), r)?);
    }
    // The merged whole must still hold together (e.g. a deleted flow no rule targets).
    merged.validate(&KnownNames::default()).map_err(|e| ApiError::conflict(name_objects(&merged, e)))?;
    if mode == FlowWrite::Draft && !doc.flows.is_empty() {
        // A draft that could never be published (another flow's listen path…) is refused now.
        let mut trial = merged.clone();
        for f in &doc.flows {
            upsert(&mut trial.flows, f.clone(), |x| x.name == f.name);
        }
        trial.validate(&KnownNames::default()).map_err(|e| ApiError::conflict(name_objects(&trial, e)))?;
    }
    check_costs(&merged, &doc)?;
    // Compiling thousands of rules takes milliseconds: do it off the async workers. Routing goes
    // on with the runtime in force until the new one is swapped in.
    let rt = tokio::task::spawn_blocking(move || compile(&merged))
        .await
        .map_err(|e| ApiError::internal(format!("compiling the configuration: {e}")))?
        .map_err(|e| ApiError::internal(format!("the merged configuration does not compile: {e}")))?;
    for (kind, key) in deletes {
        changes.push(ConfigChange::Delete { kind, key });
    }
    Ok((rt, changes))
}

/// How [`apply`] records the flows of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowWrite {
    /// Saved and published at once (`magpie apply`, `POST /v1/apply`).
    Publish,
    /// Saved as drafts (`PUT /v1/flows/{name}`, `magpie apply --draft`); what runs is unchanged.
    Draft,
    /// The document's one flow is this saved version, made live (publish, rollback).
    Version(i64),
}

/// The live version of each flow.
async fn live_versions(store: &dyn Store) -> Result<HashMap<String, i64>, ApiError> {
    Ok(store.flow_heads().await?.into_iter().filter_map(|h| h.live.map(|v| (h.name, v))).collect())
}

/// A rule that targets a flow saved only as a draft is refused with the reason.
async fn refuse_unpublished_targets(
    store: &dyn Store,
    doc: &ConfigDocument,
    known: &KnownNames,
) -> Result<(), ApiError> {
    let unknown = doc.rules.iter().any(|r| r.targets.iter().any(|t| !known.flows.contains(&t.flow)));
    if !unknown {
        return Ok(());
    }
    let drafts: Vec<String> =
        store.flow_heads().await?.into_iter().filter(|h| h.live.is_none()).map(|h| h.name).collect();
    for (i, r) in doc.rules.iter().enumerate() {
        for (j, t) in r.targets.iter().enumerate() {
            if !known.flows.contains(&t.flow) && drafts.contains(&t.flow) {
                return Err(ApiError::config(ConfigError::new(
                    format!("rules[{i}].targets[{j}].flow"),
                    format!(
                        "flow {:?} is a draft that has not been published: only published flows can be rule \
                         targets (magpie flow publish {})",
                        t.flow, t.flow
                    ),
                )));
            }
        }
    }
    Ok(())
}

/// An error about the merged configuration, with `rules[3]` / `flows[1]` / `connections[0]`
/// replaced by the object's name (the merged document is nobody's file).
fn name_objects(merged: &ConfigDocument, e: ConfigError) -> String {
    let text = e.to_string();
    let (head, rest) = text.split_once(']').unwrap_or((&text, ""));
    let Some((kind, index)) = head.split_once('[') else { return text };
    let Ok(i) = index.parse::<usize>() else { return text };
    let name = match kind {
        "rules" => merged.rules.get(i).map(|r| format!("rule {:?} of bus {:?}", r.name, r.bus)),
        "flows" => merged.flows.get(i).map(|f| format!("flow {:?}", f.name)),
        "connections" => merged.connections.get(i).map(|c| format!("connection {:?}", c.name)),
        _ => None,
    };
    match name {
        Some(n) => format!("{n}{rest}"),
        None => text,
    }
}

/// Refuses a configuration whose enabled rules would cost a bus, or the server, more than the
/// caps; the error names the first rule of `doc` on the bus that is over.
fn check_costs(merged: &ConfigDocument, doc: &ConfigDocument) -> Result<(), ApiError> {
    let mut per_bus: BTreeMap<&str, u64> = BTreeMap::new();
    for r in merged.rules.iter().filter(|r| r.enabled) {
        let cost = Pattern::parse(&r.pattern).map(|p| p.cost()).unwrap_or(0);
        let c = per_bus.entry(r.bus.as_str()).or_default();
        *c = c.saturating_add(cost);
    }
    let at = |bus: Option<&str>| {
        doc.rules
            .iter()
            .position(|r| bus.is_none_or(|b| r.bus == b))
            .map_or_else(|| "rules".to_string(), |i| format!("rules[{i}].pattern"))
    };
    let hint = "the cost grows with the number of rules, their size, wildcards, anything-but and $or: \
                simplify the patterns or spread the rules over more buses";
    for (bus, cost) in &per_bus {
        if *cost > MAX_BUS_RULE_COST {
            let reason = format!(
                "the enabled rules of bus {bus:?} would cost {cost} comparisons per event, more than the \
                 {MAX_BUS_RULE_COST} a bus may have ({hint})"
            );
            return Err(ApiError::config(ConfigError::new(at(Some(bus)), reason)));
        }
    }
    let total = per_bus.values().fold(0u64, |a, b| a.saturating_add(*b));
    if total > MAX_SERVER_RULE_COST {
        let reason = format!(
            "the enabled rules of all buses would cost {total} comparisons per event, more than the \
             {MAX_SERVER_RULE_COST} a server may have ({hint})"
        );
        return Err(ApiError::config(ConfigError::new(at(None), reason)));
    }
    Ok(())
}

fn pattern_error(i: usize, e: magpie_pattern::PatternError) -> ConfigError {
    let path = if e.path.is_empty() { format!("rules[{i}].pattern") } else { format!("rules[{i}].pattern.{}", e.path) };
    ConfigError::new(path, e.reason)
}

fn merged_known(doc: &ConfigDocument) -> KnownNames {
    KnownNames {
        buses: doc.buses.iter().map(|b| b.name.clone()).collect(),
        connections: doc.connections.iter().map(|c| c.name.clone()).collect(),
        flows: doc.flows.iter().map(|f| f.name.clone()).collect(),
    }
}

fn remove(doc: &mut ConfigDocument, kind: Kind, key: &str) {
    match kind {
        Kind::Bus => doc.buses.retain(|b| b.name != key),
        Kind::Connection => doc.connections.retain(|c| c.name != key),
        Kind::Flow => doc.flows.retain(|f| f.name != key),
        Kind::Rule => doc.rules.retain(|r| rule_key(&r.bus, &r.name) != key),
    }
}

fn upsert<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) {
    match list.iter().position(same) {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
}

fn put<T: serde::Serialize>(kind: Kind, key: String, obj: &T) -> Result<ConfigChange, ApiError> {
    let body = serde_json::to_value(obj).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ConfigChange::Put { kind, key, body })
}

/// The store key of a rule.
pub fn rule_key(bus: &str, rule: &str) -> String {
    format!("{bus}/{rule}")
}

/// Every `${ENV}` reference of a connection must be resolvable now.
pub fn check_secrets(
    c: &ConnectionSpec,
    at: &str,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<(), ApiError> {
    magpie_core::env::resolve(&c.webhook, env)
        .map_err(|r| ApiError::config(ConfigError::new(format!("{at}.webhook"), r)))?;
    if let Some(s) = &c.secret {
        magpie_core::env::resolve(s, env).map_err(|r| ApiError::config(ConfigError::new(format!("{at}.secret"), r)))?;
    }
    Ok(())
}

/// The connection as shown in API answers: secrets masked unless they are `${ENV}` references.
pub fn redacted_connection(c: &ConnectionSpec) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if !magpie_core::env::has_references(&c.webhook) {
        v["webhook"] = Value::String(magpie_connectors::redact_url(&c.webhook));
    }
    if let Some(s) = &c.secret
        && !magpie_core::env::has_references(s)
    {
        v["secret"] = Value::String("<redacted>".into());
    }
    v
}
