//! The HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (liveness), `/ready`
//! (readiness), `/stats` (JSON statistics).
//!
//! Invariant: handlers only read `Telemetry`; a failing probe answers 503 with the reason in the
//! body, so `kubectl describe` and a curl both say why. With API keys configured
//! (`security.api_keys`), `/metrics`, `/ready` and `/stats` answer 401 to a request without one
//! of them in `security.api_key_header`; `/healthz` is always open.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use super::health::Reasons;
use super::{Telemetry, TelemetryError};
use crate::config::SecurityConfig;

/// The API keys the endpoint accepts, kept as BLAKE3 digests: a request's key is hashed and
/// compared with every digest in constant time (`blake3::Hash`'s `==`), so the time taken says
/// nothing about how close a guess was, not even its length. No key: every path is open.
#[derive(Clone)]
pub struct ApiKeys {
    header: HeaderName,
    digests: Arc<[blake3::Hash]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("header", &self.header)
            .field("keys", &self.digests.len())
            .finish()
    }
}

impl ApiKeys {
    /// No authentication.
    pub fn open() -> Self {
        Self {
            header: HeaderName::from_static("x-api-key"),
            digests: Arc::new([]),
        }
    }

    /// The keys of `security.api_keys` (resolved by `config::load`), read from
    /// `security.api_key_header`; fails only on a header name that is not one, which
    /// validation rejects first.
    pub fn from_config(s: &SecurityConfig) -> Result<Self, TelemetryError> {
        let header = HeaderName::from_bytes(s.api_key_header.as_bytes())
            .map_err(|_| TelemetryError::ApiKeyHeader(s.api_key_header.clone()))?;
        let digests = s
            .api_keys
            .iter()
            .map(|k| blake3::hash(k.expose().as_bytes()))
            .collect();
        Ok(Self { header, digests })
    }

    /// Whether every path is open.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `headers` carry one of the keys. Every digest is compared, matched or not.
    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(&self.header) else {
            return false;
        };
        let given = blake3::hash(given.as_bytes());
        self.digests
            .iter()
            .fold(false, |found, key| found | (*key == given))
    }
}

/// The endpoint without authentication.
pub fn router(t: Arc<Telemetry>) -> Router {
    router_with(t, ApiKeys::open())
}

/// The endpoint; unless `keys` is open, every path but `/healthz` needs a key.
///
/// `/healthz` stays open: it is the kubelet's liveness probe, whose headers are written in
/// plain text into the pod spec (a secret cannot be referenced there), and it reveals nothing
/// but whether the process is stuck. `/ready` is protected: a readiness probe must send the key
/// (`httpGet.httpHeaders`) or use a `tcpSocket`/exec probe.
pub fn router_with(t: Arc<Telemetry>, keys: ApiKeys) -> Router {
    let mut protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .route("/models", get(models));
    if !keys.is_open() {
        protected = protected.route_layer(middleware::from_fn_with_state(keys, require_key));
    }
    protected.route("/healthz", get(healthz)).with_state(t)
}

/// Binds `addr` (so a busy port fails the start, not a later scrape) and serves until `cancel`,
/// without authentication; [`bind_with`] takes the API keys.
pub async fn bind(
    addr: SocketAddr,
    t: Arc<Telemetry>,
) -> std::io::Result<(SocketAddr, impl FnOnce(CancellationToken) -> ServeFuture)> {
    bind_with(addr, t, ApiKeys::open()).await
}

/// [`bind`], with every path but `/healthz` behind `keys` (see [`router_with`]).
pub async fn bind_with(
    addr: SocketAddr,
    t: Arc<Telemetry>,
    keys: ApiKeys,
) -> std::io::Result<(SocketAddr, impl FnOnce(CancellationToken) -> ServeFuture)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    t.set_http_addr(bound);
    let auth = if keys.is_open() {
        "no API key".to_owned()
    } else {
        format!("API key in {} except /healthz", keys.header)
    };
    tracing::info!(%bound, %auth, "HTTP endpoint: /metrics /healthz /ready /stats");
    let app = router_with(t, keys);
    Ok((bound, move |cancel: CancellationToken| -> ServeFuture {
        Box::pin(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        })
    }))
}

pub type ServeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>;

async fn require_key(State(keys): State<ApiKeys>, request: Request, next: Next) -> Response {
    if keys.accepts(request.headers()) {
        return next.run(request).await;
    }
    let challenge = format!("ApiKey header=\"{}\"", keys.header);
    let mut response = (
        StatusCode::UNAUTHORIZED,
        format!("missing or unknown API key (header {})\n", keys.header),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render_metrics(),
    )
        .into_response()
}

fn probe(verdict: Result<(), Reasons>) -> Response {
    match verdict {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> Response {
    probe(t.health.liveness())
}

async fn ready(State(t): State<Arc<Telemetry>>) -> Response {
    probe(t.health.readiness())
}

async fn stats(State(t): State<Arc<Telemetry>>) -> Response {
    Json(t.stats.snapshot()).into_response()
}

/// The model registry's report (every model, its versions and their state); 503 before the
/// registry made its first one.
async fn models(State(t): State<Arc<Telemetry>>) -> Response {
    match t.stats.models() {
        Some(view) => Json(view).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "models not loaded yet\n").into_response(),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
