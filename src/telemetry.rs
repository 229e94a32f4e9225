//! Logging set-up: a tracing subscriber from the `logging` section (text or JSON).
//!
//! Invariant: installed at most once per process; a second call is a no-op, so tests and the
//! demo can both call it.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Logging};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `logging.level`.
pub fn init_tracing(cfg: &Logging) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already installed (tests, demo): keep the first one.
    drop(result);
}
