//! Running `kbatch serve` in the test process: start it (optionally with a telemetry handle to
//! read its HTTP address), and stop it with a bounded graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kbatch_core::app::{serve_with, AppError, ServeOptions, ServeReport};
use kbatch_core::config::Config;
use kbatch_core::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

use super::with_timeout;

/// A running `serve` and its stop switch.
pub type Serving = (
    CancellationToken,
    tokio::task::JoinHandle<Result<ServeReport, AppError>>,
);

pub fn serve(cfg: &Config) -> Serving {
    serve_opts(cfg, ServeOptions::default())
}

pub fn serve_opts(cfg: &Config, opts: ServeOptions) -> Serving {
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(serve_with(cfg.clone(), cancel.clone(), opts));
    (cancel, handle)
}

/// `serve` recording into a telemetry handle the test keeps (metrics, probes, HTTP address).
pub fn serve_observed(cfg: &Config) -> (Arc<Telemetry>, Serving) {
    let telemetry = Telemetry::new(cfg).expect("telemetry");
    let opts = ServeOptions {
        telemetry: Some(telemetry.clone()),
        ..ServeOptions::default()
    };
    (telemetry, serve_opts(cfg, opts))
}

/// Cancels and waits (30 s at most) for the drain; panics if serving failed.
pub async fn stop((cancel, handle): Serving) -> ServeReport {
    cancel.cancel();
    with_timeout("a graceful drain", Duration::from_secs(30), handle)
        .await
        .expect("serve task")
        .expect("serve ran")
}

/// The HTTP endpoint's address once it listens (`http.port` 0 picks one).
pub async fn http_addr(t: &Telemetry) -> SocketAddr {
    with_timeout("the HTTP endpoint", Duration::from_secs(30), async {
        loop {
            if let Some(a) = t.http_addr() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
