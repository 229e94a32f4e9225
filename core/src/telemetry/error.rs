//! The telemetry layer's one error type: building the metrics registry, the HTTP endpoint's
//! settings, and the small client that `kbatch stats` and `kbatch probe` use.
//!
//! Invariant: every variant names what kbatch was doing and with which address or setting, so
//! the message alone tells an operator what to fix.

use std::net::SocketAddr;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TelemetryError {
    /// The Prometheus registry refused a metric (a duplicate or malformed name: a bug).
    #[error("cannot build the metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
    /// `security.api_key_header` is not an HTTP header name.
    #[error("security.api_key_header `{0}` is not an HTTP header name")]
    ApiKeyHeader(String),
    /// `logging.level` is not a tracing filter directive.
    #[error("bad log level {level:?}: {source}")]
    LogLevel {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log filter could not be swapped (its subscriber is gone).
    #[error("cannot apply the log level: {0}")]
    LogReload(#[from] tracing_subscriber::reload::Error),
    /// `http.bind` is not an IP address.
    #[error("http.bind {0:?} is not an IP address")]
    BindAddress(String),
    /// The HTTP endpoint could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A client's endpoint name did not resolve.
    #[error("cannot resolve {endpoint:?}: {source}")]
    Resolve {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// A client's endpoint name resolved to nothing.
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
    /// A client's GET failed before an answer (refused, timed out, malformed).
    #[error("GET {url}: {source}")]
    Get {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint answered, but not 200.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// `/stats` did not answer JSON.
    #[error("{url} did not answer JSON: {source}")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}
