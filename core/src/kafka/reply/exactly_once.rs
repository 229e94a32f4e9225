//! The exactly-once replier (`kafka.delivery: exactly_once`): outcomes are produced inside a
//! Kafka transaction together with the input offsets they settle (`send_offsets_to_transaction`
//! under the consumer's group membership), one transaction per `kafka.commit_interval_ms` of
//! outcomes.
//!
//! Invariants:
//! - an outcome is marked done in the offset tracker only after its transaction committed, so a
//!   rebalance drain waits for the commit and the consumer itself never commits (it reads with
//!   `isolation.level=read_committed`);
//! - an outcome of an assignment this instance no longer holds is never produced: it is dropped
//!   before each transaction, and a transaction that holds one when it reaches the commit gate
//!   ([`SharedTracker::begin_commit`]) aborts; a revoke waits for a transaction already past
//!   the gate. The partition's next owner reads the record again and answers it once;
//! - a failed delivery aborts the transaction, which is then made again with what the failure
//!   calls for: a reply its topic refuses goes to the dead-letter topic (`reply_undeliverable`,
//!   as under at-least-once), a dead letter too large for its topic goes without its value, a
//!   transient failure is retried after a backoff, without a limit. Only a fatal error (this
//!   producer fenced by a newer instance with its transactional id, or broken) stops the
//!   replier and with it the pipeline: nothing of the aborted transaction is visible to
//!   read-committed readers, and its input records are read again by whoever owns them next.
//!
//! Exactly-once holds for readers with `isolation.level=read_committed`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::delivery::{backoff, Attempt, Failure, InFlight, Job, Returned, Sender, Step};
use super::record::{Note, Part};
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
/// need distinct `kafka.client_id`s; in Kubernetes the pod name is the host name, which a
/// StatefulSet keeps across restarts (`deploy/k8s`).
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

/// How a transaction call failed.
#[derive(Debug)]
enum TxnError {
    /// The transaction can be aborted and made again.
    Abortable(String),
    /// The producer can do nothing more (fenced, or broken): the replier stops.
    Fatal(KafkaError),
}

impl TxnError {
    fn of(what: &'static str, error: RdError) -> Self {
        match &error {
            RdError::Transaction(e) if e.is_fatal() => {
                TxnError::Fatal(KafkaError::Transaction(format!("{what}: {error}")))
            }
            _ => TxnError::Abortable(format!("{what}: {error}")),
        }
    }
}

/// Runs a blocking transaction call off the async workers.
async fn call<T: Send + 'static>(
    producer: &FutureProducer,
    what: &'static str,
    f: impl FnOnce(&FutureProducer) -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> Result<T, TxnError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || f(&p))
        .await
        .map_err(|e| TxnError::Fatal(KafkaError::Blocking(e.to_string())))?
        .map_err(|e| TxnError::of(what, e))
}

/// Delivers outcomes in transactions until `outcomes` is closed. Once `intake_done` fires (the
/// consumer left), a transaction that keeps failing is given up: its records were not
/// committed, so whoever reads them next answers them.
pub async fn run_transactional_replier(
    cfg: Arc<Config>,
    mut outcomes: Receiver<Outcome>,
    tracker: SharedTracker,
    telemetry: Arc<Telemetry>,
    intake_done: CancellationToken,
) -> Result<ReplierReport, KafkaError> {
    let sender = Sender::for_replier(&cfg, transactional_config(&cfg), "transactional producer")?;
    call(sender.producer(), "init_transactions", |p| {
        p.init_transactions(TXN_CALL)
    })
    .await
    .map_err(fatal)?;
    let interval = Duration::from_millis(cfg.kafka.commit_interval_ms);
    let mut replier = Transactions {
        sender,
        settlement: Settlement::new(tracker.clone(), telemetry),
        tracker,
        topics: cfg.kafka.topics.clone(),
        intake_done,
    };
    while let Some(first) = outcomes.recv().await {
        let batch = collect(&mut outcomes, first, interval).await;
        let work = batch
            .into_iter()
            .flat_map(|outcome| replier.sender.parts(outcome))
            .map(Work::Part)
            .collect();
        if let Err(error) = replier.transact(work).await {
            tracing::error!(%error, "exactly-once replier stopping");
            return Err(error);
        }
    }
    let report = replier.settlement.into_report();
    report.log_finished("exactly_once");
    Ok(report)
}

fn fatal(e: TxnError) -> KafkaError {
    match e {
        TxnError::Fatal(e) => e,
        TxnError::Abortable(what) => KafkaError::Transaction(what),
    }
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

/// One record a transaction places, as it stands after the failures of earlier tries.
enum Work {
    Part(Part),
    /// A reply its topic refused: its dead letter (`reply_undeliverable`) instead.
    Fallback {
        refused: Returned,
        job: Job,
        note: Note,
    },
    /// A dead letter too large for its topic: sent without the original value and headers.
    Trimmed {
        refused: Returned,
        job: Job,
    },
}

impl Work {
    fn origin(&self) -> Origin {
        match self {
            Work::Part(part) => part.outcome.origin(),
            Work::Fallback { job, .. } | Work::Trimmed { job, .. } => job.pending.origin,
        }
    }
}

/// A first attempt at what `job` stands for, to make again in a new transaction.
fn again(job: &Job) -> Job {
    Job {
        pending: job.pending,
        attempt: 1,
        then: None,
        finishes: job.finishes,
    }
}

/// The replier's state between transactions.
struct Transactions {
    sender: Sender,
    settlement: Settlement,
    tracker: SharedTracker,
    topics: TierTopics,
    intake_done: CancellationToken,
}

impl Transactions {
    /// Places `work` in one committed transaction, trying again (after aborting) until it
    /// commits or nothing of it belongs to a current assignment. `Err` only when the producer
    /// can do nothing more.
    async fn transact(&mut self, mut work: Vec<Work>) -> Result<(), KafkaError> {
        for round in 1u32.. {
            let before = work.len();
            work.retain(|w| self.tracker.is_current(&w.origin()));
            self.settlement.stale(before - work.len());
            if work.is_empty() {
                return Ok(());
            }
            if round > 1 {
                if self.intake_done.is_cancelled() {
                    self.settlement.left_at_exit(work.len());
                    return Ok(());
                }
                sleep(backoff(round)).await;
            }
            if self.round(&mut work).await.map_err(fatal)? {
                return Ok(());
            }
        }
        unreachable!("the rounds never run out")
    }

    /// One try: `Ok(true)` when it committed, `Ok(false)` when it aborted (and `work` was
    /// updated for the next try); `Err` only for what is fatal.
    async fn round(&mut self, work: &mut Vec<Work>) -> Result<bool, TxnError> {
        // Nothing is open yet when this fails: no abort can help.
        call(self.sender.producer(), "begin_transaction", |p| {
            p.begin_transaction()
        })
        .await
        .map_err(|e| TxnError::Fatal(fatal(e)))?;
        let mut in_flight: Vec<InFlight> = Vec::with_capacity(work.len());
        for w in work.iter() {
            in_flight.push(self.send(w).await);
        }
        // In `work`'s order.
        let attempts: Vec<Attempt> = futures::future::join_all(in_flight).await;
        if attempts.iter().any(|a| a.result.is_err()) {
            self.abort().await?;
            if let Some(error) = self.sender.fatal_error() {
                return Err(TxnError::Fatal(KafkaError::Transaction(format!(
                    "the transactional producer failed: {error}"
                ))));
            }
            self.after_failures(work, attempts);
            return Ok(false);
        }
        let origins: Vec<Origin> = work.iter().map(Work::origin).collect();
        let offsets = match self.tracker.begin_commit(&origins) {
            Ok(offsets) => offsets,
            Err(stale) => {
                tracing::info!(stale = stale.len(), "partitions revoked during the transaction; aborting it, the next owner answers their records");
                self.abort().await?;
                return Ok(false);
            }
        };
        let committed = self.commit(offsets).await;
        match committed {
            Ok(()) => self.tracker.end_commit(),
            Err(TxnError::Abortable(why)) => {
                tracing::warn!(
                    why,
                    "committing the transaction failed; aborting it and making it again"
                );
                let aborted = self.abort().await;
                // Open only once nothing of this transaction can commit any more.
                self.tracker.end_commit();
                aborted?;
                return Ok(false);
            }
            Err(fatal) => {
                self.tracker.end_commit();
                return Err(fatal);
            }
        }
        for attempt in &attempts {
            self.settlement.acknowledged(&attempt.job);
        }
        Ok(true)
    }

    async fn send(&mut self, work: &Work) -> InFlight {
        match work {
            Work::Part(part) => self.sender.send_part(part.clone()).await,
            Work::Fallback { refused, job, note } => {
                self.sender.send_fallback(refused, job, *note).await
            }
            Work::Trimmed { refused, job } => self.sender.send_trimmed(refused, again(job)).await,
        }
    }

    /// Updates `work` after a try whose `attempts` (in `work`'s order) did not all succeed.
    fn after_failures(&mut self, work: &mut Vec<Work>, attempts: Vec<Attempt>) {
        let dead_letter_topic = self.sender.dead_letter_topic().to_owned();
        let mut keep = vec![true; work.len()];
        for (i, Attempt { job, result }) in attempts.into_iter().enumerate() {
            let Err(failure) = result else { continue };
            let Failure { error, message } = failure;
            let step = Failure {
                error: error.clone(),
                message,
            }
            .next_step(&job, &dead_letter_topic);
            match step {
                Step::Retry(_) => self.settlement.retried_in_transaction(&job, &error),
                Step::Fallback(refused, note) => {
                    tracing::warn!(%error, origin = ?job.pending.origin,
                        "reply topic refused the reply; its dead letter goes in the next transaction");
                    work[i] = Work::Fallback {
                        refused,
                        job: again(&job),
                        note,
                    };
                }
                Step::Trim(refused) => {
                    tracing::warn!(%error, origin = ?job.pending.origin,
                        "dead-letter topic refused a dead letter as too large; the next transaction sends it without the original value");
                    work[i] = Work::Trimmed {
                        refused,
                        job: again(&job),
                    };
                }
                Step::GiveUp(error) => {
                    self.settlement.given_up(&job, &error);
                    keep[i] = false;
                }
            }
        }
        let mut keep = keep.into_iter();
        work.retain(|_| keep.next().unwrap_or(true));
    }

    /// Sends `offsets` (the tracker's, for this transaction's outcomes) and commits.
    async fn commit(&self, offsets: Vec<(crate::tier::Tier, i32, i64)>) -> Result<(), TxnError> {
        let producer = self.sender.producer();
        if !offsets.is_empty() {
            let Some(group) = self.tracker.group() else {
                return Err(TxnError::Abortable(
                    "no consumer group membership yet".into(),
                ));
            };
            let tpl = offsets_list(&self.topics, &offsets);
            call(producer, "send_offsets_to_transaction", move |p| {
                p.send_offsets_to_transaction(&tpl, &group, TXN_CALL)
            })
            .await?;
        }
        call(producer, "commit_transaction", |p| {
            p.commit_transaction(TXN_CALL)
        })
        .await
    }

    async fn abort(&self) -> Result<(), TxnError> {
        call(self.sender.producer(), "abort_transaction", |p| {
            p.abort_transaction(TXN_CALL)
        })
        .await
        .map_err(|e| match e {
            // An abort that fails leaves the producer in no state to go on.
            TxnError::Abortable(what) => TxnError::Fatal(KafkaError::Transaction(what)),
            fatal => fatal,
        })
    }
}
