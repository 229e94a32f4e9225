//! The HTTP endpoint: `/metrics` (Prometheus text format), `/healthz` (liveness), `/ready`
//! (readiness), `/stats` (JSON statistics).
//!
//! Invariant: handlers only read `Telemetry`; a failing probe answers 503 with the reason in the
//! body, so `kubectl describe` and a curl both say why.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use super::Telemetry;

pub fn router(t: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .with_state(t)
}

/// Binds `addr` (so a busy port fails the start, not a later scrape) and serves until `cancel`.
pub async fn bind(
    addr: SocketAddr,
    t: Arc<Telemetry>,
) -> std::io::Result<(SocketAddr, impl FnOnce(CancellationToken) -> ServeFuture)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    t.set_http_addr(bound);
    tracing::info!(%bound, "HTTP endpoint: /metrics /healthz /ready /stats");
    let app = router(t);
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

fn probe(r: Result<(), String>) -> Response {
    match r {
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
