//! The at-least-once replier (`kafka.delivery: at_least_once`, the default): writes every
//! outcome to its topic and, once Kafka has acknowledged it, marks its origin done in the
//! offset tracker.
//!
//! Invariant: `tracker.done` is called only for an outcome whose record was acknowledged
//! (acks=all). A transient failure is retried until it succeeds (a broker outage of any length
//! delays outcomes, never strands them); a reply its topic refuses for good (missing topic,
//! permanent error) goes to the dead-letter topic instead; a producer that failed fatally is
//! replaced and `/ready` says so until the replacement delivers. An outcome that can be placed
//! nowhere stays pending, so its input offset is never committed past: at-least-once, the
//! record is re-read by whoever owns the partition next.
//!
//! Many deliveries are in flight at once (up to `MAX_IN_FLIGHT`); at the bound the replier stops
//! reading its channel, which backs up into the batcher and the consumer.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::delivery::{Attempt, InFlight, Sender, Step, MAX_IN_FLIGHT};
use super::settlement::{ReplierReport, Settlement};
use crate::config::Config;
use crate::kafka::client::producer_config;
use crate::kafka::{KafkaError, SharedTracker};
use crate::pipeline::Outcome;
use crate::telemetry::Telemetry;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers outcomes until `outcomes` is closed and every delivery has finished. Once
/// `intake_done` fires (the consumer made its final commit and left) and `outcomes` is closed,
/// failed deliveries are no longer retried and what is still in flight after [`FLUSH_TIMEOUT`]
/// is left: its records were not committed, so whoever reads them next answers them.
pub async fn run_replier(
    cfg: Arc<Config>,
    mut outcomes: Receiver<Outcome>,
    tracker: SharedTracker,
    telemetry: Arc<Telemetry>,
    intake_done: CancellationToken,
) -> Result<ReplierReport, KafkaError> {
    let mut replier = Replier {
        sender: Sender::for_replier(&cfg, producer_config(&cfg), "producer")?,
        settlement: Settlement::new(tracker, telemetry),
        stopping: false,
    };
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut open = true;
    let mut leave_at: Option<tokio::time::Instant> = None;
    loop {
        let busy = !in_flight.is_empty();
        if !open && !busy {
            break;
        }
        let room = in_flight.len() < MAX_IN_FLIGHT;
        if replier.stopping && !open && leave_at.is_none() {
            leave_at = Some(tokio::time::Instant::now() + FLUSH_TIMEOUT);
        }
        tokio::select! {
            // Acknowledgements first: they free room and move commit points.
            biased;
            Some(attempt) = in_flight.next(), if busy => {
                if let Some(next) = replier.settle(attempt).await {
                    in_flight.push(next);
                }
            }
            next = outcomes.recv(), if open && room => match next {
                Some(outcome) => {
                    // Awaited before `push` borrows `in_flight` (a borrow across the await
                    // would require the futures to be `Sync`).
                    let delivery = replier.sender.send(outcome).await;
                    in_flight.push(delivery);
                }
                None => open = false,
            },
            () = intake_done.cancelled(), if !replier.stopping => replier.stopping = true,
            () = sleep_until_some(leave_at), if leave_at.is_some() => {
                replier.settlement.left_at_exit(in_flight.len());
                break;
            }
        }
    }
    let flusher = replier.sender.producer().clone();
    tokio::task::spawn_blocking(move || flusher.flush(FLUSH_TIMEOUT))
        .await
        .map_err(|e| KafkaError::Thread(e.to_string()))?
        .map_err(KafkaError::Flush)?;
    let report = replier.settlement.into_report();
    report.log_finished("at_least_once");
    Ok(report)
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The replier's two halves: sending records, and settling them once acknowledged.
struct Replier {
    sender: Sender,
    settlement: Settlement,
    /// The consumer has left: failed deliveries are not retried any more.
    stopping: bool,
}

impl Replier {
    /// Accounts for a finished attempt; returns the follow-up, retry or fallback to run, if any.
    async fn settle(&mut self, attempt: Attempt) -> Option<InFlight> {
        let Attempt { mut job, result } = attempt;
        self.settlement.attempt_finished(&job);
        let failure = match result {
            Ok(()) => {
                self.settlement.acknowledged(&job);
                return match job.then.take() {
                    Some(next) => Some(self.sender.send(*next).await),
                    None => None,
                };
            }
            Err(failure) => failure,
        };
        if let Some(fatal) = self.sender.fatal_error() {
            self.settlement.producer_failed(&fatal);
            if let Err(error) = self.sender.renew() {
                tracing::error!(%error, "could not replace the failed producer; retrying later");
            }
        }
        match failure.next_step(&job, self.sender.dead_letter_topic()) {
            Step::Retry(returned) if self.stopping => {
                self.settlement.given_up(&job, &returned.error);
                None
            }
            Step::Retry(returned) => {
                self.settlement.retrying(&job, &returned.error);
                Some(self.sender.retry(returned.message, job))
            }
            Step::Trim(returned) => {
                tracing::warn!(error = %returned.error, origin = ?job.pending.origin,
                    "dead-letter topic refused a dead letter as too large; sending it without the original value");
                Some(self.sender.send_trimmed(&returned, job).await)
            }
            Step::Fallback(returned, note) => {
                tracing::warn!(error = %returned.error, topic = returned.message.topic(),
                    origin = ?job.pending.origin,
                    "reply topic refused the reply; sending it to the dead-letter topic");
                Some(self.sender.send_fallback(&returned, &job, note).await)
            }
            Step::GiveUp(error) => {
                self.settlement.given_up(&job, &error);
                None
            }
        }
    }
}
