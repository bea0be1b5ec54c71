//! Which site a browser request comes from: the API and the console both refuse writes sent by
//! another site's page (CSRF).

use axum::http::{HeaderMap, header};

/// Whether a request's `Origin` (or, without one, its `Referer`) names the host it was sent to.
/// `None` when the request carries neither (a sender that is not a browser).
pub fn same_site(headers: &HeaderMap) -> Option<bool> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let from = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER))?;
    let from = from
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default());
    Some(from.is_some_and(|f| f == host))
}

/// Whether the browser marks the request as sent by another site (`Sec-Fetch-Site: cross-site`).
pub fn marked_cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site")
}
