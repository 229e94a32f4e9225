//! The final report of a run: counts, throughput and latency percentiles, as a text table and as
//! JSON.
//!
//! Invariant: every figure is derived from the plan, the send log and the collector's tallies
//! alone, by the pure functions here, so the arithmetic is unit-tested without a broker.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::collector::{latency_histogram, Tally};
use super::producer::Sent;
use super::workload::{Kind, Plan};
use super::{RunSpec, SendLog};
use kbatch_core::tier::Tier;
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

/// Batch sizes the server reported on OK replies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub run_id: String,
    pub brokers: String,
    pub reply_topic: String,
    pub framing: String,
    /// Offered rate (requests/s); 0 for a backlog run.
    pub rate: f64,
    /// Tier weights critical, high, normal, low.
    pub tier_mix: [u32; 4],
    pub bad_fraction: f64,
    pub timeout_ms: Option<i32>,
    /// Requests planned.
    pub planned: u64,
    /// Requests planned per tier, highest first.
    pub planned_per_tier: [u64; 4],
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
        Self {
            run_id: spec.run_id.clone(),
            brokers: spec.brokers.clone(),
            reply_topic: spec.reply_topic.clone(),
            framing: super::args::framing_name(spec.framing).to_owned(),
            rate: spec.rate,
            tier_mix: spec.mix.weights(),
            bad_fraction: spec.bad_fraction,
            timeout_ms: spec.timeout_ms,
            planned: plan.len(),
            planned_per_tier: plan.per_tier(),
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
        }
    }

    /// The human-readable report.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let rate = if self.rate > 0.0 {
            format!("{}/s offered", self.rate)
        } else {
            "backlog (unpaced)".to_owned()
        };
        let _ = writeln!(
            s,
            "run {}: {} requests, {rate}, tiers {}, framing {}, reply topic {}",
            self.run_id,
            self.planned,
            self.tier_mix.map(|w| w.to_string()).join("/"),
            self.framing,
            self.reply_topic
        );
        let _ = writeln!(
            s,
            "sent        {} acknowledged, {} errors{} in {:.2} s ({}){}{}",
            self.sent,
            self.send_errors,
            if self.sent_invalid + self.sent_undecodable > 0 {
                format!(
                    " ({} invalid, {} undecodable)",
                    self.sent_invalid, self.sent_undecodable
                )
            } else {
                String::new()
            },
            self.send_seconds,
            self.send_rate
                .map_or("-".to_owned(), |r| format!("{r:.0}/s")),
            if self.rate > 0.0 {
                format!(", max lag behind schedule {:.1} ms", self.max_send_lag_ms)
            } else {
                String::new()
            },
            if self.stopped_early {
                ", stopped early"
            } else {
                ""
            },
        );
        if let Some(e) = &self.first_send_error {
            let _ = writeln!(s, "            first send error: {e}");
        }
        let _ = writeln!(
            s,
            "answered    {} of {} expected: missing {}, duplicates {}, unknown {}, undecodable {}, unexpected status {}",
            self.answered,
            self.expected_replies,
            self.missing,
            self.duplicates,
            self.unknown,
            self.undecodable_replies,
            self.unexpected_status
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "statuses    {}",
            if statuses.is_empty() {
                "-".to_owned()
            } else {
                statuses.join(", ")
            }
        );
        let t = &self.throughput;
        let fmt_rate = |r: Option<f64>, secs: Option<f64>| match (r, secs) {
            (Some(r), Some(secs)) => format!("{r:.0}/s over {secs:.2} s"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "throughput  {} (first send → last reply); {} (first → last reply)",
            fmt_rate(t.from_first_send, t.first_send_to_last_reply_s),
            fmt_rate(t.between_replies, t.first_to_last_reply_s)
        );
        if let Some(b) = &self.batch_size {
            let _ = writeln!(
                s,
                "batch size  mean {:.1}, p50 {}, p99 {}, max {}",
                b.mean, b.p50, b.p99, b.max
            );
        }
        let _ = writeln!(
            s,
            "latency ms  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        let ms = |us: u64| us as f64 / 1000.0;
        for l in self
            .latency
            .iter()
            .chain(std::iter::once(&self.server_latency))
        {
            if l.count == 0 && l.tier != "all" {
                continue;
            }
            let name = if l.tier == "server" {
                "server e2e"
            } else {
                l.tier.as_str()
            };
            let _ = writeln!(
                s,
                "{name:<11} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                l.count,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us),
                l.mean_us / 1000.0
            );
        }
        if self.windows.len() > 1 {
            let _ = writeln!(s, "by send time (all tiers):");
            for w in &self.windows {
                let _ = writeln!(
                    s,
                    "  {:<9} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    w.tier,
                    w.count,
                    ms(w.p50_us),
                    ms(w.p90_us),
                    ms(w.p99_us),
                    ms(w.p999_us),
                    ms(w.max_us),
                    w.mean_us / 1000.0
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::collector::Matcher;
    use crate::bench::{RequestIds, TierMix};
    use kbatch_core::config::{Framing, TierTopics, WireConfig};
    use kbatch_core::wire::{Reply, Timings};

    /// An OK critical-tier reply to `request_id` from a batch of `batch_size`.
    fn ok_reply(request_id: String, batch_size: i32) -> Reply {
        Reply {
            request_id,
            status: Status::Ok,
            error: None,
            model_name: "m".into(),
            model_version: "1".into(),
            output_shape: vec![3],
            outputs: vec![0.0; 3],
            tier: Tier::Critical,
            timings: Timings {
                batch_size,
                ..Timings::default()
            },
            completed_at_ms: 0,
        }
    }

    #[test]
    fn throughput_uses_both_spans() {
        let t0 = Instant::now();
        let t = Throughput::compute(
            1000,
            Some(t0),
            Some(t0 + Duration::from_millis(500)),
            Some(t0 + Duration::from_millis(2500)),
        );
        assert_eq!(t.from_first_send, Some(400.0));
        assert_eq!(t.between_replies, Some(500.0));
        assert_eq!(t.first_send_to_last_reply_s, Some(2.5));
        assert_eq!(t.first_to_last_reply_s, Some(2.0));
    }

    #[test]
    fn throughput_is_undefined_without_a_span() {
        let t0 = Instant::now();
        let none = Throughput::compute(0, Some(t0), None, None);
        assert_eq!((none.from_first_send, none.between_replies), (None, None));
        let one = Throughput::compute(1, Some(t0), Some(t0), Some(t0));
        assert_eq!(one.between_replies, None);
        assert_eq!(one.from_first_send, None, "zero-length span");
    }

    #[test]
    fn latency_summary_of_an_empty_histogram_is_zero() {
        let l = LatencySummary::of("low", &latency_histogram());
        assert_eq!((l.count, l.p99_us, l.max_us, l.mean_us), (0, 0, 0, 0.0));
    }

    #[test]
    fn report_counts_missing_duplicates_and_percentiles() {
        let spec = RunSpec {
            brokers: "b:9092".into(),
            properties: vec![],
            topics: TierTopics::default(),
            reply_topic: "replies".into(),
            reply_from_start: true,
            wire: WireConfig::default(),
            framing: Framing::Confluent,
            correlation_header: "correlation-id".into(),
            total: 100,
            rate: 100.0,
            mix: TierMix::new([1, 0, 0, 0]).unwrap(),
            bad_fraction: 0.0,
            timeout_ms: None,
            seed: 1,
            wait: Duration::from_secs(1),
            run_id: "r".into(),
        };
        let base = Instant::now();
        let plan = std::sync::Arc::new(Plan::new(100, &spec.mix, 0.0, 1));
        let log = std::sync::Arc::new(SendLog::new(100, base));
        let mut m = Matcher::new(RequestIds::new("r"), plan.clone(), log.clone());
        // 100 sent 10 ms apart; the first 90 answered after (seq + 1) ms; seq 0 twice.
        for seq in 0..100u64 {
            log.mark_sent(seq, base + Duration::from_millis(10 * seq));
        }
        for seq in (0..90u64).chain([0]) {
            let r = ok_reply(format!("r-{seq}"), 8);
            let at = base + Duration::from_millis(11 * seq + 1);
            m.on_reply(&r, at);
        }
        let sent = Sent {
            attempted: 100,
            delivered: 100,
            first_send: Some(base),
            last_send: Some(base + Duration::from_millis(990)),
            ..Sent::default()
        };
        let r = BenchReport::build(&spec, &plan, &log, &sent, &m.into_tally());
        assert_eq!(
            (r.expected_replies, r.answered, r.missing, r.duplicates),
            (100, 90, 10, 1)
        );
        assert_eq!(r.statuses.get("OK"), Some(&90));
        let crit = &r.latency[0];
        assert_eq!((crit.tier.as_str(), crit.count), ("critical", 90));
        // Latency of seq s is s + 1 ms: 1..=90 ms.
        assert!(crit.p50_us.abs_diff(45_000) <= 1_000, "{}", crit.p50_us);
        assert!(crit.max_us.abs_diff(90_000) <= 90, "{}", crit.max_us);
        assert_eq!(r.latency[4].tier, "all");
        assert_eq!(r.latency[4].count, 90);
        assert_eq!(r.batch_size.as_ref().map(|b| b.max), Some(8));
        // Last reply at 11 × 89 + 1 = 980 ms after the first send, first reply at 1 ms.
        assert!((r.throughput.from_first_send.unwrap() - 90.0 / 0.980).abs() < 0.01);
        assert!((r.throughput.between_replies.unwrap() - 90.0 / 0.979).abs() < 0.01);
        let text = r.render_text();
        assert!(
            text.contains("answered    90 of 100 expected: missing 10, duplicates 1"),
            "{text}"
        );
        assert!(text.contains("critical"), "{text}");
        assert!(!text.contains("\nlow "), "empty tiers are left out: {text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["missing"], 10);
        assert_eq!(json["latency"][0]["tier"], "critical");
    }

    #[test]
    fn latency_is_also_reported_per_ten_second_window_of_send_time() {
        let mix = TierMix::new([1, 0, 0, 0]).unwrap();
        let base = Instant::now();
        let plan = std::sync::Arc::new(Plan::new(100, &mix, 0.0, 1));
        let log = std::sync::Arc::new(SendLog::new(100, base));
        let mut m = Matcher::new(RequestIds::new("w"), plan, log.clone());
        m.restart_clock(base);
        // Sent 300 ms apart (0 to 29.7 s); answered after 5 ms, then 50 ms from seq 67 on.
        for seq in 0..100u64 {
            let sent = base + Duration::from_millis(300 * seq);
            log.mark_sent(seq, sent);
            let r = ok_reply(format!("w-{seq}"), 0);
            let latency = if seq < 67 { 5 } else { 50 };
            m.on_reply(&r, sent + Duration::from_millis(latency));
        }
        let w = &m.tally().windows;
        let counts: Vec<u64> = w.iter().map(|h| h.len()).collect();
        assert_eq!(
            counts,
            [34, 33, 33],
            "sends at 0..=9.9 s, 10.2..=19.8 s, 20.1..=29.7 s"
        );
        let p99_ms: Vec<u64> = w.iter().map(|h| h.value_at_quantile(0.99) / 1000).collect();
        assert_eq!(p99_ms, [5, 5, 50]);
    }
}
