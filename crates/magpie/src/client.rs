//! The HTTP client of the CLI's server commands.

use anyhow::anyhow;
use reqwest::Method;
use serde_json::Value;

use crate::Exit;

/// Talks to a Magpie server.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `server`, sending `token` (`--token` or `MAGPIE_TOKEN`).
    pub fn new(server: &str, token: Option<String>) -> Result<Client, Exit> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(crate::invalid(anyhow!("--server {server:?}: expected a URL such as http://127.0.0.1:7480")));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Exit(1, anyhow!("building the HTTP client: {e}")))?;
        let token = token.filter(|t| !t.is_empty());
        Ok(Client { base, http, token })
    }

    /// Sends a request; an error answer becomes an [`Exit`] with the server's message.
    pub async fn call(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> Result<Value, Exit> {
        let (status, v) = self.call_raw(method, path, body).await?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        Err(error_of(status, &v))
    }

    /// Sends a request and returns the status with the body, whatever the status.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, Value), Exit> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.map_err(|e| {
            Exit(
                1,
                anyhow!(
                    "cannot reach Magpie at {}: {e} (is `magpie serve` running? set --server or MAGPIE_SERVER)",
                    self.base
                ),
            )
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| Exit(1, anyhow!("reading the answer: {e}")))?;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, v))
    }
}

/// The server's error answer as an exit: 2 for a refused request (4xx), 1 otherwise.
pub fn error_of(status: u16, v: &Value) -> Exit {
    let msg = v
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    let code = if (400..500).contains(&status) { 2 } else { 1 };
    Exit(code, anyhow!("the server answered {status}: {msg}"))
}
