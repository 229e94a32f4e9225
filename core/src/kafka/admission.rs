//! What becomes of one consumed record: routed to a model version and admitted to a tier queue,
//! answered at once with an error reply, or dead-lettered. A pure function of the record's parts,
//! the configuration and the routing table in force, so every branch is testable without Kafka.
//!
//! Invariant: every record yields exactly one `Decision`, and every `Decision` carries the
//! record's `Origin`; only `Admit` requests were routed to a served version, passed
//! `wire::validate` against that version's signature (their tensors in its input order) and `security.tier_access` for the tier
//! they are served at.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::guard::ClientGuard;
use super::headers::RawHeader;
use super::reply_topics::ReplyTopics;
use crate::config::Config;
use crate::model::ServedModel;
use crate::pipeline::{dedup_key, Admitted, Origin, Outcome, ReplyTo};
use crate::registry::Routes;
use crate::tier::Tier;
use crate::wire::{
    validate, DeadLetter, Header, Request, Status, TraceContext, WireCodec, WireError,
};

/// The parts of a Kafka record admission looks at, borrowed from the consumed message.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Headers in record order; names are bytes (Kafka does not check their encoding).
    pub headers: &'a [RawHeader<'a>],
    /// Record timestamp (ms since the epoch), if the record has one.
    pub timestamp_ms: Option<i64>,
}

/// The single fate of one record.
// `Admit` is the common case and moves on into a channel: boxing it would cost an allocation
// per request to shrink a value that lives for one function call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision {
    /// A valid request for the loaded model: goes to the queue of `Admitted::tier`.
    Admit(Admitted),
    /// Not readable as a request: an `Outcome::DeadLetter`.
    DeadLetter(Outcome),
    /// A readable request with invalid content (or a malformed `reply_topic`), an
    /// `INVALID_INPUT` reply; or one refused by `security.tier_access` (client not allowed on
    /// its tier, or over its rate limit) or by the reply-topic rules (`replies.*`), a `REJECTED`
    /// reply. All are immediate error replies, so the consumer treats them alike.
    Invalid(Outcome),
    /// A request for another model or version: an `UNKNOWN_MODEL` reply.
    UnknownModel(Outcome),
}

/// Admission rules built once from the configuration, and the routing table they follow.
#[derive(Debug, Clone)]
pub struct Admission {
    codec: WireCodec,
    /// The model versions served (the registry replaces the table on a rescan): a request
    /// naming another model or version is answered UNKNOWN_MODEL.
    routes: Routes,
    /// Where replies may go. Shared by clones like `guard`: the bound on distinct names is one
    /// instance's.
    reply_topics: Arc<Mutex<ReplyTopics>>,
    correlation_header: String,
    processor: String,
    /// Per served tier: the timeout of a request that sets neither a deadline nor a timeout.
    default_timeout_ms: [Option<i64>; 4],
    /// Deduplication is on: hash each admitted input here, on the consumer thread, so the
    /// batcher's single task only looks the key up (the hash is most of deduplication's cost).
    hash_inputs: bool,
    /// `security.tier_access`, when it restricts any tier. Shared by clones: the consumer thread
    /// is the only caller, so the lock is never contended; a clone must not reset the buckets.
    guard: Option<Arc<Mutex<ClientGuard>>>,
}

/// Per tier: `priority_queueing.<tier>_default_timeout_ms`, `None` when unset.
fn default_timeouts_ms(cfg: &Config) -> [Option<i64>; 4] {
    Tier::ALL.map(|t| {
        let d = cfg.priority_queueing.default_timeout(t)?;
        i64::try_from(d.as_millis()).ok()
    })
}

impl Admission {
    pub fn new(cfg: &Config, routes: Routes) -> Self {
        Self {
            codec: WireCodec::new(&cfg.wire),
            routes,
            reply_topics: Arc::new(Mutex::new(ReplyTopics::new(cfg))),
            correlation_header: cfg.replies.correlation_header.clone(),
            processor: cfg.kafka.client_id.clone(),
            default_timeout_ms: default_timeouts_ms(cfg),
            hash_inputs: cfg.deduplication.enable_deduplication,
            guard: cfg
                .security
                .tier_access
                .is_restricted()
                .then(|| Arc::new(Mutex::new(ClientGuard::new(&cfg.security)))),
        }
    }

    /// A reloaded configuration: the tiers' default timeouts and whether inputs are hashed for
    /// deduplication apply to the next record decided. (The rest is restart-only.)
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.default_timeout_ms = default_timeouts_ms(cfg);
        self.hash_inputs = cfg.deduplication.enable_deduplication;
    }

    /// Decides the fate of `rec`, read from the topic of `origin.topic_tier`. `now` and `now_ms`
    /// are the same moment on the monotonic and the wall clock.
    pub fn decide(
        &self,
        rec: &RecordParts<'_>,
        origin: Origin,
        now: Instant,
        now_ms: i64,
    ) -> Decision {
        let request = match self.codec.decode_request(rec.value.unwrap_or_default()) {
            Ok(r) => r,
            Err(e) => return Decision::DeadLetter(self.dead_letter(rec, origin, &e, now_ms)),
        };
        // Access first: a client refused here learns nothing about the model served. Tokens
        // are spent by every request read, valid or not: each one costs a decode.
        let refusal = self.refusal(&request, origin.topic_tier, now).err();
        let table = self.routes.current();
        let route = table
            .resolve(
                request.model_name.as_deref(),
                request.model_version.as_deref(),
                &request.request_id,
            )
            .cloned();
        let (model, model_error) = match route {
            Ok(m) => (m, None),
            Err(e) => (table.fallback.clone(), Some(e)),
        };
        let mut request = request;
        let sig = &model.info().signature;
        let validation = validate(&mut request, &sig.inputs, &sig.outputs);
        let reply_topic = self.reply_topics().resolve(request.reply_topic.as_deref());
        let (reply_topic, topic_refusal) = match reply_topic {
            Ok(topic) => (topic, None),
            Err(refusal) => (
                self.reply_topics().default_topic().to_owned(),
                Some(refusal),
            ),
        };
        let admitted = self.admitted(rec, origin, request, reply_topic, model, now, now_ms);
        if let Some(msg) = refusal {
            let o = Outcome::error(admitted, Status::Rejected, msg, now_ms);
            return Decision::Invalid(o);
        }
        // Before the model and the content: the refusal decides where the reply goes.
        if let Some(refusal) = topic_refusal {
            let o = Outcome::error(admitted, refusal.status(), refusal.to_string(), now_ms);
            return Decision::Invalid(o);
        }
        // The model is checked before the content: a request for another model is validated
        // against that model's shape, so a shape error here would only hide the real problem.
        if let Some(e) = model_error {
            let o = Outcome::error(admitted, Status::UnknownModel, e.to_string(), now_ms);
            return Decision::UnknownModel(o);
        }
        match validation {
            Ok(()) => Decision::Admit(self.keyed(admitted)),
            Err(e) => {
                let o = Outcome::error(admitted, Status::InvalidInput, e.to_string(), now_ms);
                Decision::Invalid(o)
            }
        }
    }

    /// The reply to an admitted request its full queue cannot take (`when_queue_full: reject`).
    pub fn overloaded(&self, a: Admitted, now_ms: i64) -> Outcome {
        let msg = format!(
            "the {} queue is full (batch_processing.max_queue_size); retry later",
            a.tier
        );
        Outcome::error(a, Status::Overloaded, msg, now_ms)
    }

    /// `security.tier_access` for the tier `req` would be served at (its topic's, or the lower
    /// one it asks for): the resources it would use are that tier's.
    fn refusal(&self, req: &Request, topic_tier: Tier, now: Instant) -> Result<(), String> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let tier = topic_tier.demoted_to(req.priority);
        guard.lock().unwrap_or_else(PoisonError::into_inner).check(
            req.client_id.as_deref(),
            tier,
            now.into_std(),
        )
    }

    fn keyed(&self, mut a: Admitted) -> Admitted {
        if self.hash_inputs {
            a.dedup_key = Some(dedup_key(a.model.id(), a.request.inputs.tensors()));
        }
        a
    }

    fn reply_topics(&self) -> std::sync::MutexGuard<'_, ReplyTopics> {
        self.reply_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[allow(clippy::too_many_arguments)]
    fn admitted(
        &self,
        rec: &RecordParts<'_>,
        origin: Origin,
        request: Request,
        reply_topic: String,
        model: Arc<ServedModel>,
        now: Instant,
        now_ms: i64,
    ) -> Admitted {
        let reply_to = ReplyTo {
            topic: reply_topic,
            key: rec.key.map(<[u8]>::to_vec),
            correlation_id: header(rec, &self.correlation_header),
            trace: TraceContext::join(header_ref(rec, "traceparent")),
        };
        let tier = origin.topic_tier.demoted_to(request.priority);
        let record_timestamp_ms = rec.timestamp_ms.unwrap_or(now_ms);
        // The tier's default timeout counts from when the request was written, like its own.
        let deadline_ms = request.effective_deadline_ms().or_else(|| {
            self.default_timeout_ms[tier.index()].map(|t| record_timestamp_ms.saturating_add(t))
        });
        Admitted {
            tier,
            deadline: deadline_ms.map(|d| deadline_instant(d, now, now_ms)),
            request,
            origin,
            reply_to,
            record_timestamp_ms,
            admitted_at: now,
            dedup_key: None,
            model,
        }
    }

    fn dead_letter(
        &self,
        rec: &RecordParts<'_>,
        origin: Origin,
        err: &WireError,
        now_ms: i64,
    ) -> Outcome {
        let headers = rec
            .headers
            .iter()
            .map(|h| Header::from_raw(h.key, h.value))
            .collect();
        let letter = DeadLetter {
            source_topic: rec.topic.to_owned(),
            source_partition: rec.partition,
            source_offset: rec.offset,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.map(<[u8]>::to_vec),
            headers,
            error_kind: err.kind().to_owned(),
            error: err.to_string(),
            failed_at_ms: now_ms,
            processor: self.processor.clone(),
        };
        Outcome::DeadLetter {
            letter: Box::new(letter),
            key: rec.key.map(<[u8]>::to_vec),
            origin,
        }
    }
}

/// Value of the first header named `name`.
fn header(rec: &RecordParts<'_>, name: &str) -> Option<Vec<u8>> {
    header_ref(rec, name).map(<[u8]>::to_vec)
}

fn header_ref<'a>(rec: &RecordParts<'a>, name: &str) -> Option<&'a [u8]> {
    rec.headers
        .iter()
        .find(|h| h.key == name.as_bytes())
        .and_then(|h| h.value)
}

/// The wall-clock deadline `deadline_ms` on the monotonic clock, given that `now` (monotonic)
/// and `now_ms` (wall) are the same moment. A deadline already past maps to a moment in the
/// past (or `now` if the clock cannot go that far back), so the batcher sees it as expired.
pub fn deadline_instant(deadline_ms: i64, now: Instant, now_ms: i64) -> Instant {
    let delta = deadline_ms.saturating_sub(now_ms);
    let magnitude = Duration::from_millis(delta.unsigned_abs());
    if delta >= 0 {
        now.checked_add(magnitude)
            .unwrap_or(now + Duration::from_secs(86_400 * 365))
    } else {
        now.checked_sub(magnitude).unwrap_or(now)
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
