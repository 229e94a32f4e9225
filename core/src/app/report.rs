//! What one `serve` run did, stage by stage.

use crate::batcher::BatcherReport;
use crate::inference::WorkerReport;
use crate::kafka::{ConsumerReport, ReplierReport};
use crate::wire::Status;

/// What each stage did during one `serve` run.
#[derive(Debug)]
pub struct ServeReport {
    pub consumer: ConsumerReport,
    pub batcher: BatcherReport,
    pub workers: Vec<WorkerReport>,
    pub replier: ReplierReport,
}

/// A few lines a person can read: what came in, what ran, what went out.
impl std::fmt::Display for ServeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.consumer;
        writeln!(
            f,
            "consumed {}: admitted {}, dead-lettered {}, invalid {}, unknown model {}, shed {}, \
             abandoned {}, topic pauses {}, pending at exit {}{}",
            c.consumed,
            c.admitted,
            c.dead_lettered,
            c.invalid,
            c.unknown_model,
            c.shed,
            c.abandoned,
            c.paused,
            c.pending_at_exit,
            if c.final_commit_failed {
                " (final commit failed: those will be re-read)"
            } else {
                ""
            }
        )?;
        let b = &self.batcher;
        let mean = if b.batches > 0 {
            b.requests as f64 / b.batches as f64
        } else {
            0.0
        };
        writeln!(
            f,
            "batched {} requests in {} batches (mean {mean:.1}); expired {}, starved {}",
            b.requests, b.batches, b.expired, b.starved
        )?;
        let (calls, failed, inference_us) = self.workers.iter().fold((0, 0, 0), |acc, w| {
            (
                acc.0 + w.batches,
                acc.1 + w.failed_batches,
                acc.2 + w.inference_us,
            )
        });
        writeln!(
            f,
            "inference: {calls} calls on {} worker(s), {failed} failed, {:.2} s in the model",
            self.workers.len(),
            inference_us as f64 / 1e6
        )?;
        let r = &self.replier;
        let statuses: Vec<String> = Status::ALL
            .iter()
            .filter(|&&s| r.replies_with(s) > 0)
            .map(|&s| format!("{} {}", s.as_str(), r.replies_with(s)))
            .collect();
        write!(
            f,
            "replies: {} ({}); dead letters {}, reply fallbacks {}, delivery failures {}",
            r.total_replies(),
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            },
            r.dead_letters,
            r.reply_fallbacks,
            r.delivery_failures
        )
    }
}
