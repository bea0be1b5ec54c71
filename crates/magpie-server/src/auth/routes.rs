//! The route → role table: what every route of the API asks of its caller. README's table is
//! this one (a test compares them), and the OpenAPI document's routes are exactly these.

use axum::http::Method;
use magpie_core::auth::Need::{self, *};

/// Every route: method, path as routed, what it needs.
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/v1/openapi.json", Public),
    ("GET", "/metrics", Read),
    ("GET", "/v1/buses", Read),
    ("POST", "/v1/buses", Operate),
    ("GET", "/v1/buses/{bus}", Read),
    ("PUT", "/v1/buses/{bus}", Operate),
    ("DELETE", "/v1/buses/{bus}", Operate),
    ("POST", "/v1/buses/{bus}/events", Ingest),
    ("POST", "/v1/buses/{bus}/sources/{source}", Ingest),
    ("GET", "/v1/buses/{bus}/sources/{source}", Ingest),
    ("POST", "/hooks/{*path}", Ingest),
    ("GET", "/v1/buses/{bus}/rules", Read),
    ("GET", "/v1/buses/{bus}/rules/{rule}", Read),
    ("PUT", "/v1/buses/{bus}/rules/{rule}", Operate),
    ("DELETE", "/v1/buses/{bus}/rules/{rule}", Operate),
    ("GET", "/v1/flows", Read),
    ("GET", "/v1/flow-versions", Read),
    ("GET", "/v1/flows/{flow}", Read),
    ("PUT", "/v1/flows/{flow}", Operate),
    ("DELETE", "/v1/flows/{flow}", Operate),
    ("GET", "/v1/flows/{flow}/versions", Read),
    ("POST", "/v1/flows/{flow}/publish", Operate),
    ("POST", "/v1/flows/{flow}/rollback", Operate),
    ("GET", "/v1/flows/{flow}/diff", Read),
    ("GET", "/v1/connections", Read),
    ("GET", "/v1/connections/{name}", Read),
    ("PUT", "/v1/connections/{name}", Operate),
    ("DELETE", "/v1/connections/{name}", Operate),
    ("GET", "/v1/connections/{name}/outbox", Read),
    ("GET", "/v1/config", Read),
    ("POST", "/v1/apply", Operate),
    ("POST", "/v1/patterns/test", Read),
    ("GET", "/v1/events", Read),
    ("POST", "/v1/events/replay", Operate),
    ("GET", "/v1/events/{id}/trace", Read),
    ("GET", "/v1/templates", Read),
    ("GET", "/v1/dead-letters", Read),
    ("POST", "/v1/dead-letters/redrive", Operate),
    ("GET", "/v1/dead-letters/{id}", Read),
    ("GET", "/v1/digests/{id}", Read),
    ("GET", "/v1/alerts", Read),
    ("GET", "/v1/silences", Read),
    ("POST", "/v1/silences", Operate),
    ("GET", "/v1/silences/{id}", Read),
    ("DELETE", "/v1/silences/{id}", Operate),
    ("GET", "/v1/tokens", Admin),
    ("POST", "/v1/tokens", Admin),
    ("DELETE", "/v1/tokens/{name}", Admin),
    ("GET", "/v1/audit", Admin),
];

/// What a routed request needs. A route missing from the table needs an admin (closed, not
/// open, by default); `HEAD` is `GET`; a method a listed path does not take needs nothing (the
/// router answers 405).
pub fn need(method: &Method, path: &str) -> Need {
    let m = if method == Method::HEAD { "GET" } else { method.as_str() };
    if let Some(r) = ROUTES.iter().find(|(rm, rp, _)| *rm == m && *rp == path) {
        return r.2;
    }
    if ROUTES.iter().any(|(_, rp, _)| *rp == path) { Need::Public } else { Need::Admin }
}

/// How README writes a need: the roles that may, joined.
pub fn roles_text(need: Need) -> String {
    if need == Need::Public {
        return "anyone (no token)".into();
    }
    need.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_table_lists_exactly_the_documented_routes() {
        let doc = serde_json::to_value(crate::api::openapi_document()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in item.as_object().unwrap().keys() {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
        // OpenAPI writes `/hooks/{*path}` as `/hooks/{path}`.
        let table: BTreeSet<(String, String)> =
            ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.replace("{*path}", "{path}"))).collect();
        assert_eq!(table.len(), ROUTES.len(), "a route is listed twice");
        let missing: Vec<_> = documented.difference(&table).collect();
        let extra: Vec<_> = table.difference(&documented).collect();
        assert!(missing.is_empty() && extra.is_empty(), "not in the table: {missing:?}; not routed: {extra:?}");
    }

    #[test]
    fn the_readme_table_is_this_table() {
        let readme = include_str!("../../../../README.md");
        let mut rows = BTreeSet::new();
        for line in readme.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 {
                continue;
            }
            let route = cells[1].trim_matches('`');
            if let Some((m, p)) = route.split_once(' ')
                && ["GET", "POST", "PUT", "DELETE"].contains(&m)
                && cells[2].contains("anyone") | cells[2].contains("admin")
            {
                rows.insert((m.to_string(), p.to_string(), cells[2].to_string()));
            }
        }
        let want: BTreeSet<(String, String, String)> =
            ROUTES.iter().map(|(m, p, n)| (m.to_string(), p.to_string(), roles_text(*n))).collect();
        let missing: Vec<_> = want.difference(&rows).collect();
        let extra: Vec<_> = rows.difference(&want).collect();
        assert!(missing.is_empty() && extra.is_empty(), "README lacks {missing:?}; README has {extra:?}");
    }

    #[test]
    fn unknown_routes_need_an_admin_and_head_is_get() {
        assert_eq!(need(&Method::GET, "/v1/nothing"), Need::Admin);
        assert_eq!(need(&Method::HEAD, "/v1/buses"), Need::Read);
        assert_eq!(need(&Method::PATCH, "/v1/buses"), Need::Public, "405 from the router");
    }
}
