//! What a run sends: the seeded plan (tier and kind of every request), the request-id scheme and
//! the encoded records.
//!
//! Invariant: the plan and the tensor data are a pure function of the seed, so two runs with the
//! same arguments send the same requests in the same order to the same topics.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SendLog;
use kbatch_core::config::Framing;
use kbatch_core::tensor::{Tensor, TensorData};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Request, SchemaVersion, WireCodec};

/// One request's tensor shape for the bundled model (no batch dimension).
pub const MODEL_SHAPE: [i32; 2] = [64, 16];
const ELEMENTS: usize = (MODEL_SHAPE[0] * MODEL_SHAPE[1]) as usize;
/// Distinct tensors per run; requests cycle through them (generating 1,024 fresh values per
/// request would cost more than encoding it).
const DISTINCT_INPUTS: usize = 256;

/// Relative weights of the four tiers, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierMix {
    weights: [u32; 4],
}

impl TierMix {
    /// Weights for critical, high, normal, low; at least one must be positive.
    pub fn new(weights: [u32; 4]) -> Result<Self, String> {
        if weights.iter().all(|&w| w == 0) {
            return Err("tier mix: at least one weight must be positive".into());
        }
        Ok(Self { weights })
    }

    pub fn weights(&self) -> [u32; 4] {
        self.weights
    }

    /// The tier for a uniform draw `u` in [0, 1): tier i takes a share `w_i / sum(w)` of the range.
    pub fn sample(&self, u: f64) -> Tier {
        let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
        let mut point = u.clamp(0.0, 1.0) * total as f64;
        for (tier, &w) in Tier::ALL.iter().zip(&self.weights) {
            if point < f64::from(w) {
                return *tier;
            }
            point -= f64::from(w);
        }
        // u == 1.0 or rounding at the top: the last tier with any weight.
        Tier::ALL
            .iter()
            .zip(&self.weights)
            .rev()
            .find(|(_, &w)| w > 0)
            .map(|(t, _)| *t)
            .unwrap_or(Tier::Low)
    }
}

impl Default for TierMix {
    fn default() -> Self {
        Self {
            weights: [10, 20, 40, 30],
        }
    }
}

impl FromStr for TierMix {
    type Err = String;

    /// `critical,high,normal,low` weights, e.g. `10,20,40,30`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([',', '/']).map(str::trim).collect();
        if parts.len() != 4 {
            return Err(format!(
                "tier mix `{s}`: expected four weights critical,high,normal,low (e.g. 10,20,40,30)"
            ));
        }
        let mut weights = [0u32; 4];
        for (w, p) in weights.iter_mut().zip(&parts) {
            *w = p
                .parse()
                .map_err(|_| format!("tier mix `{s}`: `{p}` is not a non-negative integer"))?;
        }
        Self::new(weights)
    }
}

impl fmt::Display for TierMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, n, l] = self.weights;
        write!(f, "{c}/{h}/{n}/{l}")
    }
}

/// What kind of record a sequence number is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A well-formed request: expects an OK reply (or DEADLINE_EXCEEDED, OVERLOADED, ...).
    Valid,
    /// Decodes but fails validation (wrong shape): expects an INVALID_INPUT reply.
    Invalid,
    /// Cannot be decoded: goes to the dead-letter topic, no reply.
    Undecodable,
}

/// The seeded tier and kind of every request of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Low two bits: tier index; bits 2-3: kind.
    entries: Vec<u8>,
}

impl Plan {
    pub fn new(total: u64, mix: &TierMix, bad_fraction: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let entries = (0..total)
            .map(|_| {
                let tier = mix.sample(rng.random::<f64>());
                let kind = if bad_fraction > 0.0 && rng.random::<f64>() < bad_fraction {
                    if rng.random::<bool>() {
                        Kind::Undecodable
                    } else {
                        Kind::Invalid
                    }
                } else {
                    Kind::Valid
                };
                tier as u8 | (kind_code(kind) << 2)
            })
            .collect();
        Self { entries }
    }

    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tier of request `seq` (panics past the end: callers check with [`Plan::len`]).
    pub fn tier(&self, seq: u64) -> Tier {
        Tier::ALL[usize::from(self.entries[seq as usize] & 0b11)]
    }

    pub fn kind(&self, seq: u64) -> Kind {
        match self.entries[seq as usize] >> 2 {
            0 => Kind::Valid,
            1 => Kind::Invalid,
            _ => Kind::Undecodable,
        }
    }

    /// Requests of each tier, highest first.
    pub fn per_tier(&self) -> [u64; 4] {
        let mut out = [0; 4];
        for seq in 0..self.len() {
            out[self.tier(seq).index()] += 1;
        }
        out
    }

    /// Records successfully sent that should get a reply (every kind but `Undecodable`).
    pub fn expected_replies(&self, log: &SendLog) -> u64 {
        (0..self.len().min(log.len() as u64))
            .filter(|&s| self.kind(s) != Kind::Undecodable && log.sent_ok(s))
            .count() as u64
    }

    /// Successfully sent records of `kind`.
    pub fn sent_of_kind(&self, log: &SendLog, kind: Kind) -> u64 {
        (0..self.len().min(log.len() as u64))
            .filter(|&s| self.kind(s) == kind && log.sent_ok(s))
            .count() as u64
    }
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Valid => 0,
        Kind::Invalid => 1,
        Kind::Undecodable => 2,
    }
}

/// Request ids of one run: `<run>-<seq>`; warm-up probes are `<run>-w<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    prefix: String,
}

/// What a reply's request id says about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Seq(u64),
    WarmUp,
    Foreign,
}

impl RequestIds {
    pub fn new(run_id: &str) -> Self {
        Self {
            prefix: format!("{run_id}-"),
        }
    }

    /// Writes the id of request `seq` into `out` (cleared first; reuses its allocation).
    pub fn write(&self, seq: u64, out: &mut String) {
        use fmt::Write as _;
        out.clear();
        out.push_str(&self.prefix);
        let _ = write!(out, "{seq}");
    }

    pub fn id(&self, seq: u64) -> String {
        let mut s = String::new();
        self.write(seq, &mut s);
        s
    }

    pub fn warm_up(&self, n: u64) -> String {
        format!("{}w{n}", self.prefix)
    }

    pub fn classify(&self, id: &str) -> IdKind {
        match id.strip_prefix(&self.prefix) {
            Some(rest) if rest.starts_with('w') => IdKind::WarmUp,
            // Only canonical decimals ("7", not "07" or "+7") are ours.
            Some(rest) => match rest.parse::<u64>() {
                Ok(seq) if rest == seq.to_string() => IdKind::Seq(seq),
                _ => IdKind::Foreign,
            },
            None => IdKind::Foreign,
        }
    }
}

/// How the records of a run are written: their framing and request contract version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFormat {
    pub framing: Framing,
    /// Version 1 (`shape`/`data`) or version 2 (the same tensor, named `input`, as bytes).
    pub contract: SchemaVersion,
}

/// Encodes the records of a run: seeded tensors, one reusable request per tensor.
pub struct RecordFactory {
    codec: WireCodec,
    framing: Framing,
    templates: Vec<Request>,
}

impl RecordFactory {
    pub fn new(
        codec: WireCodec,
        format: RecordFormat,
        seed: u64,
        reply_topic: &str,
        timeout_ms: Option<i32>,
    ) -> Self {
        // A different stream from the plan's, so changing the mix does not change the data.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6b62_6174_6368_2d64);
        let templates = (0..DISTINCT_INPUTS)
            .map(|_| Request {
                request_id: String::new(),
                created_at_ms: 0,
                deadline_ms: None,
                timeout_ms,
                model_name: None,
                model_version: None,
                priority: None,
                reply_topic: Some(reply_topic.to_owned()),
                client_id: Some("kbatch-bench".to_owned()),
                inputs: inputs(
                    format.contract,
                    (0..ELEMENTS)
                        .map(|_| rng.random_range(-1.0f32..1.0))
                        .collect(),
                ),
            })
            .collect();
        Self {
            codec,
            framing: format.framing,
            templates,
        }
    }

    /// Writes record `seq` of `kind` with request id `id` into `out` (cleared first).
    pub fn encode(&mut self, seq: u64, kind: Kind, id: &str, now_ms: i64, out: &mut Vec<u8>) {
        out.clear();
        if kind == Kind::Undecodable {
            // No framing starts with 0xFF: the consumer dead-letters it as unknown_framing.
            out.push(0xff);
            out.extend_from_slice(b"kbatch-bench undecodable record ");
            out.extend_from_slice(id.as_bytes());
            return;
        }
        let n = self.templates.len();
        let req = &mut self.templates[seq as usize % n];
        req.request_id.clear();
        req.request_id.push_str(id);
        req.created_at_ms = now_ms;
        if kind == Kind::Invalid {
            // 64 × 15 ≠ 1,024 values: decodes, then fails validation.
            shape_of(req)[1] = MODEL_SHAPE[1] - 1;
        }
        self.codec.encode_request(req, self.framing, out);
        shape_of(req)[1] = MODEL_SHAPE[1];
    }
}

/// One request's input for the bundled model, in the contract's version.
fn inputs(contract: SchemaVersion, values: Vec<f32>) -> Inputs {
    match contract {
        SchemaVersion::V1 => Inputs::v1(MODEL_SHAPE.to_vec(), values),
        SchemaVersion::V2 => Inputs::V2(vec![Tensor::new(
            "input",
            MODEL_SHAPE.to_vec(),
            TensorData::F32(values),
        )]),
    }
}

/// The shape of a template's one tensor, to spoil and restore it in place.
fn shape_of(req: &mut Request) -> &mut Vec<i32> {
    match &mut req.inputs {
        Inputs::V1(t) => &mut t.shape,
        Inputs::V2(ts) => &mut ts[0].shape,
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
