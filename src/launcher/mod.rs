//! Local broker processes for the demo, the benchmarks and `kbatch broker`: Apache Kafka (a JVM
//! started from an installed `libs/` folder) and tansu (a single static binary).
//!
//! Invariant: a launched broker has answered a Kafka request at its bootstrap address before
//! `start` returns, and every process started here is stopped (cleanly when asked, killed when
//! its handle drops) and its files removed; nothing outlives the handle.

pub mod kafka;
pub mod tansu;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use kafka::{KafkaHome, KafkaOptions, KafkaProcess, StopReport};
pub use tansu::TansuProcess;

/// Why a broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "no Kafka installation at {home}: expected {home}/libs/kafka_2.13-<version>.jar \
         (run scripts/install-kafka.sh, or set KBATCH_KAFKA_HOME to a Kafka distribution)"
    )]
    NotInstalled { home: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{broker}: formatting the KRaft log directory failed ({status}):\n{output}")]
    Format {
        broker: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("{broker} exited ({status}) before answering at {bootstrap}; its log ends:\n{log}")]
    Exited {
        broker: String,
        bootstrap: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{broker} did not answer at {bootstrap} within {limit:?}; its log ends:\n{log}")]
    Timeout {
        broker: String,
        bootstrap: String,
        limit: Duration,
        log: String,
    },
}

impl LaunchError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> Result<u16, LaunchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LaunchError::io("finding a free port", e))
}

/// True once a broker at `bootstrap` answers a metadata request listing itself. A listening
/// socket is not enough: a JVM broker accepts connections seconds before it serves requests.
pub async fn answers(bootstrap: &str, limit: Duration) -> bool {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "0")
            .create()
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        consumer
            .fetch_metadata(None, limit)
            .map(|md| !md.brokers().is_empty())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Why a started broker process is not serving.
enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl NotReady {
    /// The error for broker `broker` at `bootstrap`, with the end of its output.
    fn error(self, broker: String, bootstrap: &str, limit: Duration, log: String) -> LaunchError {
        let bootstrap = bootstrap.to_owned();
        match self {
            Self::Exited(status) => LaunchError::Exited {
                broker,
                bootstrap,
                status,
                log,
            },
            Self::TimedOut => LaunchError::Timeout {
                broker,
                bootstrap,
                limit,
                log,
            },
        }
    }
}

/// Polls `ready` every `every` until it says yes, the child exits, or `limit` (from `since`)
/// passes. The caller stops a child that timed out.
async fn await_ready<F, Fut>(
    child: &mut tokio::process::Child,
    (since, limit, every): (std::time::Instant, Duration, Duration),
    mut ready: F,
) -> Result<(), NotReady>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if ready().await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if since.elapsed() > limit {
            return Err(NotReady::TimedOut);
        }
        tokio::time::sleep(every).await;
    }
}

/// The last `lines` lines of a text file (a broker's log), for error messages.
fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
