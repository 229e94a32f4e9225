//! The exactly-once replier (`kafka.delivery: exactly_once`): outcomes are produced inside a
//! Kafka transaction together with the input offsets they settle (`send_offsets_to_transaction`
//! under the consumer's group membership), one transaction per `kafka.commit_interval_ms` of
//! outcomes.
//!
//! Invariants: an outcome is marked done in the offset tracker only after its transaction
//! committed, so a rebalance drain waits for the commit and the consumer itself never commits
//! (it reads with `isolation.level=read_committed`); any failure inside a transaction (a refused
//! delivery, a fenced member, a timeout) aborts it and stops the replier with an error, which
//! stops the pipeline: nothing of the aborted transaction is visible to read-committed readers,
//! and its input records are read again from the last committed offsets by whoever owns them
//! next. Exactly-once holds for readers with `isolation.level=read_committed`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep_until, Instant};

use super::delivery::{create_producer, Attempt, Sender};
use super::record::RecordBuilder;
use super::settlement::{ReplierReport, Settlement};
use crate::config::{Config, TierTopics};
use crate::kafka::client::producer_config;
use crate::kafka::context::offsets_list;
use crate::kafka::{KafkaError, SharedTracker};
use crate::pipeline::{Origin, Outcome};
use crate::telemetry::Telemetry;

/// Bound on each transaction call (init, offsets, commit, abort).
const TXN_CALL: Duration = Duration::from_secs(30);

/// The transactional producer's settings: the at-least-once producer's plus a transactional id
/// stable across restarts of one replica (`<group>-<client id>-<host name>`), so a restarted
/// instance fences its crashed predecessor and aborts its open transaction at once instead of
/// leaving read-committed readers blocked until the transaction times out. Replicas on one host
/// need distinct `kafka.client_id`s (in Kubernetes the pod name is the host name).
fn transactional_config(cfg: &Config) -> rdkafka::ClientConfig {
    let mut config = producer_config(cfg);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id = format!(
        "{}-{}-{}",
        cfg.kafka.group_id,
        cfg.kafka.client_id,
        host.trim()
    );
    config
        .set("transactional.id", id)
        // A crashed instance's open transaction blocks read-committed readers of its reply
        // partitions until the coordinator times it out: keep that short.
        .set("transaction.timeout.ms", "10000")
        // librdkafka requires a delivery to give up within its transaction.
        .set("message.timeout.ms", "10000");
    config
}

/// Runs a blocking transaction call off the async workers.
async fn call<T: Send + 'static>(
    producer: &FutureProducer,
    what: &'static str,
    f: impl FnOnce(&FutureProducer) -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> Result<T, KafkaError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || f(&p))
        .await
        .map_err(|e| KafkaError::Thread(e.to_string()))?
        .map_err(|e| KafkaError::Transaction(format!("{what}: {e}")))
}

/// Delivers outcomes in transactions until `outcomes` is closed.
pub async fn run_transactional_replier(
    cfg: Arc<Config>,
    mut outcomes: Receiver<Outcome>,
    tracker: SharedTracker,
    telemetry: Arc<Telemetry>,
) -> Result<ReplierReport, KafkaError> {
    let producer = create_producer(transactional_config(&cfg), "transactional producer")?;
    call(&producer, "init_transactions", |p| {
        p.init_transactions(TXN_CALL)
    })
    .await?;
    let interval = Duration::from_millis(cfg.kafka.commit_interval_ms);
    let mut sender = Sender::new(producer, RecordBuilder::new(cfg.clone()));
    let mut settlement = Settlement::new(tracker.clone(), telemetry);
    while let Some(first) = outcomes.recv().await {
        call(sender.producer(), "begin_transaction", |p| {
            p.begin_transaction()
        })
        .await?;
        let batch = collect(&mut outcomes, first, interval).await;
        match transact(&mut sender, &tracker, &cfg.kafka.topics, batch).await {
            // Settled only now that the transaction committed.
            Ok(attempts) => {
                for attempt in &attempts {
                    settlement.acknowledged(&attempt.job);
                }
            }
            Err(error) => {
                tracing::error!(%error, "transaction failed; aborting it and stopping");
                if let Err(abort) = call(sender.producer(), "abort_transaction", |p| {
                    p.abort_transaction(TXN_CALL)
                })
                .await
                {
                    tracing::error!(error = %abort, "abort failed too");
                }
                return Err(error);
            }
        }
    }
    let report = settlement.into_report();
    report.log_finished("exactly_once");
    Ok(report)
}

/// `first` and whatever else arrives within `interval`.
async fn collect(
    outcomes: &mut Receiver<Outcome>,
    first: Outcome,
    interval: Duration,
) -> Vec<Outcome> {
    let deadline = Instant::now() + interval;
    let mut batch = vec![first];
    loop {
        tokio::select! {
            next = outcomes.recv() => match next {
                Some(outcome) => batch.push(outcome),
                None => return batch,
            },
            _ = sleep_until(deadline) => return batch,
        }
    }
}

/// Produces `batch` and commits it with the offsets it settles (positions of `tracker`'s
/// partitions, whose topics are `topics`); returns the acknowledged attempts. No retry: any
/// failed delivery fails the transaction.
async fn transact(
    sender: &mut Sender,
    tracker: &SharedTracker,
    topics: &TierTopics,
    batch: Vec<Outcome>,
) -> Result<Vec<Attempt>, KafkaError> {
    let origins: Vec<Origin> = batch.iter().map(Outcome::origin).collect();
    let mut in_flight = Vec::with_capacity(batch.len());
    for outcome in batch {
        in_flight.push(sender.send(outcome).await);
    }
    let mut attempts = futures::future::join_all(in_flight).await;
    // Second parts (a poison record's reply after its dead letter) go in the same transaction.
    let then: Vec<Outcome> = attempts
        .iter_mut()
        .filter_map(|attempt| attempt.job.then.take().map(|outcome| *outcome))
        .collect();
    let mut second = Vec::with_capacity(then.len());
    for outcome in then {
        second.push(sender.send(outcome).await);
    }
    attempts.extend(futures::future::join_all(second).await);
    if let Some(Err(failure)) = attempts.iter().map(|a| &a.result).find(|r| r.is_err()) {
        return Err(KafkaError::Transaction(format!(
            "a delivery failed: {}",
            failure.error
        )));
    }
    let producer = sender.producer();
    let offsets = tracker.positions_if_done(&origins);
    if !offsets.is_empty() {
        let group = tracker
            .group()
            .ok_or_else(|| KafkaError::Transaction("no consumer group membership yet".into()))?;
        let tpl = offsets_list(topics, &offsets);
        call(producer, "send_offsets_to_transaction", move |p| {
            p.send_offsets_to_transaction(&tpl, &group, TXN_CALL)
        })
        .await?;
    }
    call(producer, "commit_transaction", |p| {
        p.commit_transaction(TXN_CALL)
    })
    .await?;
    Ok(attempts)
}
