//! `kbatch create-topics`: the four tier topics, the default reply topic and the dead-letter
//! topic of the configuration, created through the Kafka layer's topic administration.
//!
//! Invariant: on success every topic exists with every partition led; topics that existed are
//! left as they were.

use std::time::{Duration, Instant};

use clap::Args;
use kbatch_core::config::{ConfigError, LoadOptions};
use kbatch_core::kafka::{all_topics, ensure_topics, KafkaError};
use thiserror::Error;

use crate::source::ConfigSource;

/// Why `create-topics` failed.
#[derive(Debug, Error)]
pub enum TopicsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// `kbatch create-topics`: the four tier topics, the default reply topic and the dead-letter
/// topic of the configuration.
#[derive(Debug, Clone, Args)]
pub struct CreateTopicsArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Bootstrap servers; default `kafka.brokers` from the configuration.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions per topic (existing topics are left as they are).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Keep retrying this many seconds while the broker is not reachable yet (an init container
    /// started together with its broker); 0 tries once.
    #[arg(long, default_value_t = 0)]
    pub wait_secs: u64,
}

impl CreateTopicsArgs {
    pub fn load_options(&self) -> LoadOptions {
        self.source.load_options()
    }
}

/// One topic `create-topics` made sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTopic {
    pub name: String,
    pub partitions: i32,
}

/// Creates the topics (retrying for `--wait-secs` while the broker is not reachable yet) and
/// returns their names.
pub async fn create_topics(args: &CreateTopicsArgs) -> Result<Vec<EnsuredTopic>, TopicsError> {
    let mut cfg = kbatch_core::config::load(&args.load_options())?.config;
    if let Some(b) = &args.brokers {
        cfg.kafka.brokers = b.clone();
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        match ensure_topics(&cfg.kafka.brokers, &cfg, args.partitions).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{e}; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all_topics(&cfg)
        .into_iter()
        .map(|name| EnsuredTopic {
            name,
            partitions: args.partitions,
        })
        .collect())
}
