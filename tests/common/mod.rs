//! Shared integration-test harness.
//!
//! Invariant: every wait a test performs is bounded ([`with_timeout`]) and every Kafka name a test
//! creates is unique ([`unique_topic`], [`unique_group`]), so tests can share one broker, run in
//! parallel and never hang CI.
//!
//! Layout: [`kafka`] holds broker-agnostic client helpers (configs, topics, produce/consume),
//! usable against the in-process [`mock_cluster`] as well as a real broker; [`broker`] starts a
//! broker container through testcontainers.
#![allow(dead_code)]

pub mod broker;
pub mod kafka;
pub mod pipeline;
pub mod promql;
pub mod serving;

use std::future::Future;
use std::time::Duration;

// Re-exported for the test files; each test binary uses only some of them.
#[allow(unused_imports)]
pub use broker::{shared_broker, start_broker, Broker, BrokerKind, SharedBroker};
#[allow(unused_imports)]
pub use kafka::*;

/// Default bound for a single wait (a delivery, a group join, a batch of records). Generous
/// because a tansu group join alone is held for ~session.timeout/2 (3 s) and CI machines are slow.
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs `fut`, panicking with `what` if it has not finished within `limit`.
///
/// The message names the wait so a CI log says *which* step stalled, not just that the test
/// binary was killed.
pub async fn with_timeout<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A topic name that no other test (or earlier run against a long-lived broker) uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A consumer-group id that no other test uses, so group state never leaks between tests.
pub fn unique_group(prefix: &str) -> String {
    format!("{prefix}-group-{}", uuid::Uuid::new_v4().simple())
}
