//! The final report of a run: counts, throughput and latency percentiles, as a table
//! (`BenchReport::table`) and as JSON (its `Serialize`).
//!
//! Invariant: every figure is derived from the plan, the send log and the collector's tallies
//! alone, by the pure functions here, so the arithmetic is unit-tested without a broker.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::collector::{latency_histogram, Stage, Tally};
use super::producer::Sent;
use super::timeline::{sends_per_second, Timeline};
use super::workload::{Kind, Plan};
use super::{RunSpec, SendLog};
use kbatch_core::telemetry::table::{Grid, Table};
use kbatch_core::tier::Tier;
use kbatch_core::wire::SchemaVersion;
use kbatch_core::wire::Status;

/// Answered requests per second, two ways.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    /// answered / (last reply − first send): what a caller sees end to end, including the time
    /// the first request needed to come back.
    pub from_first_send: Option<f64>,
    /// answered / (last reply − first reply): the steady serving rate; in a drain test, how
    /// fast the backlog was worked off.
    pub between_replies: Option<f64>,
    /// Seconds from the first send to the last reply.
    pub first_send_to_last_reply_s: Option<f64>,
    /// Seconds from the first reply to the last reply.
    pub first_to_last_reply_s: Option<f64>,
}

impl Throughput {
    pub fn compute(
        answered: u64,
        first_send: Option<Instant>,
        first_reply: Option<Instant>,
        last_reply: Option<Instant>,
    ) -> Self {
        let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_secs_f64()),
            _ => None,
        };
        let per_sec = |secs: Option<f64>| secs.filter(|s| *s > 0.0).map(|s| answered as f64 / s);
        let from_send = span(first_send, last_reply);
        let replies = span(first_reply, last_reply);
        Self {
            from_first_send: per_sec(from_send),
            // One reply spans no time: the rate between replies needs at least two.
            between_replies: if answered >= 2 {
                per_sec(replies)
            } else {
                None
            },
            first_send_to_last_reply_s: from_send,
            first_to_last_reply_s: replies,
        }
    }
}

/// Latency percentiles of one tier (or `all`), in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub tier: String,
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl LatencySummary {
    pub fn of(name: &str, h: &Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Self {
            tier: name.to_owned(),
            count: h.len(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
            mean_us: if empty { 0.0 } else { h.mean() },
        }
    }
}

/// One value per tier, named (JSON `{"critical": …, "high": …, "normal": …, "low": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerTier<T> {
    pub critical: T,
    pub high: T,
    pub normal: T,
    pub low: T,
}

impl<T> PerTier<T> {
    /// The value of `tier`.
    pub fn get(&self, tier: Tier) -> &T {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Normal => &self.normal,
            Tier::Low => &self.low,
        }
    }
}

/// From an array in `Tier::ALL` order (highest first), as the plan and the mix keep them.
impl<T> From<[T; 4]> for PerTier<T> {
    fn from([critical, high, normal, low]: [T; 4]) -> Self {
        Self {
            critical,
            high,
            normal,
            low,
        }
    }
}

/// Batch sizes the server reported on OK replies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Where the time of one tier's OK replies went: per [`Stage`], in stage order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageBreakdown {
    pub tier: String,
    pub count: u64,
    pub stages: Vec<StagePart>,
}

/// One stage's percentiles (each taken on its own: the p99s do not add up to the total's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagePart {
    pub stage: &'static str,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl StageBreakdown {
    fn of(tier: Tier, hists: &[Histogram<u64>; Stage::COUNT]) -> Self {
        Self {
            tier: tier.as_str().to_owned(),
            count: hists[0].len(),
            stages: Stage::ALL
                .iter()
                .zip(hists)
                .map(|(stage, h)| StagePart {
                    stage: stage.as_str(),
                    p50_us: h.value_at_quantile(0.5),
                    p99_us: h.value_at_quantile(0.99),
                })
                .collect(),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub run_id: String,
    pub brokers: String,
    pub reply_topic: String,
    pub framing: String,
    /// Request contract version: `v1` or `v2`.
    pub contract: SchemaVersion,
    /// Offered rate (requests/s); 0 for a backlog run.
    pub rate: f64,
    /// Wall-clock time of the first send, in milliseconds since the Unix epoch.
    pub started_unix_ms: Option<u64>,
    /// Tier weights.
    pub tier_mix: PerTier<u32>,
    pub bad_fraction: f64,
    pub timeout_ms: Option<i32>,
    /// Requests planned.
    pub planned: u64,
    /// Requests planned per tier.
    pub planned_per_tier: PerTier<u64>,
    /// Records the broker acknowledged.
    pub sent: u64,
    pub send_errors: u64,
    pub first_send_error: Option<String>,
    /// Sent records with a wrong shape (expect INVALID_INPUT).
    pub sent_invalid: u64,
    /// Sent records that cannot be decoded (expect a dead letter, no reply).
    pub sent_undecodable: u64,
    /// Sending stopped early (interrupted).
    pub stopped_early: bool,
    /// Seconds from the first to the last send.
    pub send_seconds: f64,
    /// Achieved send rate (records/s).
    pub send_rate: Option<f64>,
    /// Largest lateness of a send behind its schedule (ms): the generator could not keep up
    /// when this is more than a few ms.
    pub max_send_lag_ms: f64,
    /// Sent records that should get a reply.
    pub expected_replies: u64,
    /// Requests with at least one reply.
    pub answered: u64,
    /// expected_replies − answered.
    pub missing: u64,
    /// Extra replies to already answered requests.
    pub duplicates: u64,
    /// Replies this run did not send a request for.
    pub unknown: u64,
    /// Records on the reply topic that are not replies.
    pub undecodable_replies: u64,
    /// Answers whose status contradicts the record sent (valid → INVALID_INPUT, invalid → other).
    pub unexpected_status: u64,
    pub consumer_errors: u64,
    /// First replies by status.
    pub statuses: BTreeMap<String, u64>,
    pub throughput: Throughput,
    /// Per tier (sent tier), then `all`: reply received − request sent.
    pub latency: Vec<LatencySummary>,
    /// The server's own `timings.end_to_end_us`, all tiers.
    pub server_latency: LatencySummary,
    /// All tiers by when the request was sent, per 10-second window from the first send
    /// (`tier` names the window, e.g. `10-20s`): a flat tail has about the same p99 in each.
    pub windows: Vec<LatencySummary>,
    pub batch_size: Option<BatchSummary>,
    /// Per tier with OK replies: intake, queue, inference and reply parts of the latency.
    pub stages: Vec<StageBreakdown>,
    /// Second by second from the first send: p50/p99 per tier by send time, sends and replies
    /// (what `--plot` draws; `kbatch plot timeline` redraws it from this report). Boxed: the
    /// report travels by value (the demo's load result) and stays small.
    pub timeline: Box<Timeline>,
}

impl BenchReport {
    pub(super) fn build(
        spec: &RunSpec,
        plan: &Plan,
        log: &SendLog,
        sent: &Sent,
        tally: &Tally,
    ) -> Self {
        let expected = plan.expected_replies(log);
        let mut all = latency_histogram();
        let mut latency = Vec::with_capacity(5);
        for tier in Tier::ALL {
            let h = &tally.latency[tier.index()];
            // Same bounds on both sides: adding cannot fail.
            let _ = all.add(h);
            latency.push(LatencySummary::of(tier.as_str(), h));
        }
        latency.push(LatencySummary::of("all", &all));
        let statuses = Status::ALL
            .iter()
            .filter(|&&s| tally.statuses[s as usize] > 0)
            .map(|&s| (s.as_str().to_owned(), tally.statuses[s as usize]))
            .collect();
        let send_seconds = match (sent.first_send, sent.last_send) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let b = &tally.batch_sizes;
        let timeline = Box::new(match tally.origin.or(sent.first_send) {
            Some(origin) => Timeline::build(&tally.seconds, &sends_per_second(log, origin)),
            None => Timeline::build(&tally.seconds, &[]),
        });
        Self {
            run_id: spec.run_id.clone(),
            brokers: spec.brokers.clone(),
            reply_topic: spec.reply_topic.clone(),
            framing: super::args::framing_name(spec.format.framing).to_owned(),
            contract: spec.format.contract,
            rate: spec.rate,
            started_unix_ms: sent.first_send_wall.and_then(|t| {
                let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
                u64::try_from(ms).ok()
            }),
            tier_mix: PerTier::from(spec.mix.weights()),
            bad_fraction: spec.bad_fraction,
            timeout_ms: spec.timeout_ms,
            planned: plan.len(),
            planned_per_tier: PerTier::from(plan.per_tier()),
            sent: sent.delivered,
            send_errors: sent.failed,
            first_send_error: sent.first_error.clone(),
            sent_invalid: plan.sent_of_kind(log, Kind::Invalid),
            sent_undecodable: plan.sent_of_kind(log, Kind::Undecodable),
            stopped_early: sent.stopped_early,
            send_seconds,
            send_rate: (send_seconds > 0.0).then(|| sent.attempted as f64 / send_seconds),
            max_send_lag_ms: sent.max_lag.as_secs_f64() * 1000.0,
            expected_replies: expected,
            answered: tally.answered,
            missing: expected.saturating_sub(tally.answered),
            duplicates: tally.duplicates,
            unknown: tally.unknown,
            undecodable_replies: tally.undecodable,
            unexpected_status: tally.unexpected_status,
            consumer_errors: tally.consumer_errors,
            statuses,
            throughput: Throughput::compute(
                tally.answered,
                sent.first_send,
                tally.first_reply,
                tally.last_reply,
            ),
            latency,
            server_latency: LatencySummary::of("server", &tally.server_latency),
            windows: tally
                .windows
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let w = super::collector::WINDOW.as_secs() as usize;
                    LatencySummary::of(&format!("{}-{}s", i * w, (i + 1) * w), h)
                })
                .collect(),
            batch_size: (!b.is_empty()).then(|| BatchSummary {
                mean: b.mean(),
                p50: b.value_at_quantile(0.5),
                p99: b.value_at_quantile(0.99),
                max: b.max(),
            }),
            stages: Tier::ALL
                .iter()
                .filter(|t| !tally.stages[t.index()][0].is_empty())
                .map(|&t| StageBreakdown::of(t, &tally.stages[t.index()]))
                .collect(),
            timeline,
        }
    }

    /// The report as a table: the run, what was sent, what was answered, throughput, batch
    /// sizes, latency per tier and, for runs longer than one window, per 10 s of send time.
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.section(format!("run {}", self.run_id))
            .row("requests", self.planned)
            .row(
                "offered rate",
                if self.rate > 0.0 {
                    format!("{}/s", self.rate)
                } else {
                    "backlog (unpaced)".to_owned()
                },
            )
            .row(
                "tier mix",
                format!(
                    "{} (critical/high/normal/low)",
                    [
                        self.tier_mix.critical,
                        self.tier_mix.high,
                        self.tier_mix.normal,
                        self.tier_mix.low
                    ]
                    .map(|w| w.to_string())
                    .join("/")
                ),
            )
            .row("framing", &self.framing)
            .row(
                "contract",
                match self.contract {
                    SchemaVersion::V1 => "version 1",
                    SchemaVersion::V2 => "version 2",
                },
            )
            .row("reply topic", &self.reply_topic);

        t.section("sent")
            .row("acknowledged", self.sent)
            .row("send errors", self.send_errors);
        if let Some(e) = &self.first_send_error {
            t.row("first send error", e);
        }
        t.row("invalid records", self.sent_invalid)
            .row("undecodable records", self.sent_undecodable)
            .row("send time", format!("{:.2} s", self.send_seconds))
            .row(
                "send rate",
                self.send_rate
                    .map_or("-".to_owned(), |r| format!("{r:.0}/s")),
            );
        if self.rate > 0.0 {
            t.row(
                "max lag behind schedule",
                format!("{:.1} ms", self.max_send_lag_ms),
            );
        }
        if self.stopped_early {
            t.row("stopped early", "yes (interrupted)");
        }

        t.section("answered")
            .row("expected", self.expected_replies)
            .row("answered", self.answered)
            .row("missing", self.missing)
            .row("duplicates", self.duplicates)
            .row("unknown", self.unknown)
            .row("undecodable replies", self.undecodable_replies)
            .row("unexpected status", self.unexpected_status)
            .row("consumer errors", self.consumer_errors);
        if self.statuses.is_empty() {
            t.row("statuses", "none");
        } else {
            let mut statuses = Grid::new(["status", "first replies"]);
            for (status, n) in &self.statuses {
                statuses.row([status.clone(), n.to_string()]);
            }
            t.grid(statuses);
        }

        let th = &self.throughput;
        let rate = |r: Option<f64>, secs: Option<f64>| match (r, secs) {
            (Some(r), Some(secs)) => format!("{r:.0}/s over {secs:.2} s"),
            _ => "-".to_owned(),
        };
        t.section("throughput")
            .row(
                "first send → last reply",
                rate(th.from_first_send, th.first_send_to_last_reply_s),
            )
            .row(
                "first → last reply",
                rate(th.between_replies, th.first_to_last_reply_s),
            );

        if let Some(b) = &self.batch_size {
            let mut g = Grid::new(["", "mean", "p50", "p99", "max"]);
            g.row([
                "batch size".to_owned(),
                format!("{:.1}", b.mean),
                b.p50.to_string(),
                b.p99.to_string(),
                b.max.to_string(),
            ]);
            t.section("batch size (server, OK replies)").grid(g);
        }

        let mut latency = Grid::new(["tier", "count", "p50", "p90", "p99", "p99.9", "max", "mean"]);
        for l in self
            .latency
            .iter()
            .chain(std::iter::once(&self.server_latency))
        {
            // Tiers the mix left out have no row; `all` always has one.
            if l.count == 0 && l.tier != "all" {
                continue;
            }
            let name = if l.tier == "server" {
                "server e2e"
            } else {
                l.tier.as_str()
            };
            latency.row(latency_cells(name, l));
        }
        t.section("latency (ms)").grid(latency);

        if !self.stages.is_empty() {
            let mut header = vec!["tier".to_owned(), "count".to_owned()];
            header.extend(Stage::ALL.iter().map(|s| s.as_str().to_owned()));
            let mut stages = Grid::new(header);
            let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
            for b in &self.stages {
                let mut row = vec![b.tier.clone(), b.count.to_string()];
                row.extend(
                    b.stages
                        .iter()
                        .map(|p| format!("{} / {}", ms(p.p50_us), ms(p.p99_us))),
                );
                stages.row(row);
            }
            t.section("where the time went, OK replies (ms, p50 / p99)")
                .grid(stages);
        }

        if self.windows.len() > 1 {
            let mut windows = Grid::new([
                "sent at", "count", "p50", "p90", "p99", "p99.9", "max", "mean",
            ]);
            for w in &self.windows {
                windows.row(latency_cells(&w.tier, w));
            }
            t.section("latency by send time, all tiers (ms)")
                .grid(windows);
        }
        t
    }
}

/// One latency row: the name, the count, then the percentiles in milliseconds.
fn latency_cells(name: &str, l: &LatencySummary) -> Vec<String> {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    vec![
        name.to_owned(),
        l.count.to_string(),
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us),
        format!("{:.2}", l.mean_us / 1000.0),
    ]
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
