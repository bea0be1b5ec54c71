//! Serving the router on a listener: HTTP/1.1 over TCP, or over TLS (rustls) with
//! `--tls-cert`/`--tls-key`, with limits that keep one client from hurting others:
//!
//! - a client has [`HttpLimits::header_timeout`] to send a request's headers (slow clients are
//!   cut off; the TLS handshake has as long);
//! - a body that stops arriving for [`HttpLimits::body_timeout`] fails its request;
//! - at most [`HttpLimits::max_connections`] connections are served at once (more wait in the
//!   listen queue), and at most [`HttpLimits::max_requests`] requests run at once (more are
//!   answered 503 with `Retry-After`; see `api::shed_load`).
//!
//! On shutdown it stops accepting and gives requests in flight a grace period.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::ServerError;

/// Limits on connections and requests.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers (and a TLS handshake).
    pub header_timeout: Duration,
    /// How long a request body may stall between two reads.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Requests handled at once; more are answered 503.
    pub max_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_requests: 512,
        }
    }
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The rustls acceptor of these files; errors name the file and what is wrong.
    pub fn acceptor(&self) -> Result<TlsAcceptor, ServerError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |p: &PathBuf, e: &dyn std::fmt::Display| ServerError::Setting(format!("{}: {e}", p.display()));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| bad(&self.cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&self.cert, &e))?;
        if certs.is_empty() {
            return Err(bad(&self.cert, &"no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad(&self.key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Setting(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServerError::Setting(format!("TLS: the key does not go with the certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// How long requests in flight get to finish once shutdown begins.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    tls: Option<&TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let acceptor = tls.map(TlsFiles::acceptor).transpose()?;
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let body_timeout = limits.body_timeout;
    let handshake_timeout = limits.header_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let req = req.map(|b| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, b)));
            app.clone().oneshot(req)
        });
        let http = http.clone();
        match &acceptor {
            None => {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {GRACE:?}: stopping anyway");
    }
    Ok(())
}
