//! Logging set-up: a tracing subscriber from the `logging` section (text or JSON), with a level
//! filter that a configuration reload can change.
//!
//! Invariant: installed at most once per process; a second call is a no-op, so tests and the
//! demo can both call it. `RUST_LOG`, when set, wins over `logging.level`, at start and on reload.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use super::TelemetryError;
use crate::config::{LogFormat, Logging};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn env_overrides() -> bool {
    std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty())
}

/// Installs the global subscriber.
pub fn init_tracing(cfg: &Logging) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed (tests, demo): keep the first one, and its handle.
    if result.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies a reloaded `logging.level`. `Ok(false)`: nothing changed (no subscriber installed by
/// `init_tracing`, or `RUST_LOG` overrides the configuration).
pub fn set_log_level(level: &str) -> Result<bool, TelemetryError> {
    let Some(handle) = FILTER.get() else {
        return Ok(false);
    };
    if env_overrides() {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(level).map_err(|source| TelemetryError::LogLevel {
        level: level.to_owned(),
        source,
    })?;
    handle.reload(filter)?;
    Ok(true)
}
