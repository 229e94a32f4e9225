//! The reply record (`schemas/reply.avsc`) and its Avro body codec.
//!
//! Invariant: exactly one reply is written per accepted request; `outputs` is empty unless
//! `status` is OK.

use serde::{Deserialize, Serialize};

use super::avro::{Reader, Writer};
use super::error::WireError;
use super::request::opt;
use crate::config::WireConfig;
use crate::tier::Tier;

/// Outcome of a request. The discriminant is the Avro enum index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Ok = 0,
    InvalidInput = 1,
    DeadlineExceeded = 2,
    ModelError = 3,
    Overloaded = 4,
    Rejected = 5,
    UnknownModel = 6,
    Internal = 7,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::InvalidInput,
        Status::DeadlineExceeded,
        Status::ModelError,
        Status::Overloaded,
        Status::Rejected,
        Status::UnknownModel,
        Status::Internal,
    ];

    /// The Avro symbol, also used as a Kafka header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::InvalidInput => "INVALID_INPUT",
            Status::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Status::ModelError => "MODEL_ERROR",
            Status::Overloaded => "OVERLOADED",
            Status::Rejected => "REJECTED",
            Status::UnknownModel => "UNKNOWN_MODEL",
            Status::Internal => "INTERNAL",
        }
    }
}

/// Where the time of one request went, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    pub queue_wait_us: i64,
    pub batch_size: i32,
    pub inference_us: i64,
    pub end_to_end_us: i64,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub request_id: String,
    pub status: Status,
    #[serde(default)]
    pub error: Option<String>,
    pub model_name: String,
    pub model_version: String,
    pub output_shape: Vec<i32>,
    pub outputs: Vec<f32>,
    pub tier: Tier,
    pub timings: Timings,
    pub completed_at_ms: i64,
}

impl Reply {
    pub(super) fn encode_avro(&self, out: &mut Vec<u8>) {
        let mut w = Writer { out };
        w.string(&self.request_id);
        w.long(self.status as i64);
        w.opt_string(self.error.as_deref());
        w.string(&self.model_name);
        w.string(&self.model_version);
        w.int_array(&self.output_shape);
        w.float_array(&self.outputs);
        w.long(self.tier.index() as i64);
        w.long(self.timings.queue_wait_us);
        w.long(i64::from(self.timings.batch_size));
        w.long(self.timings.inference_us);
        w.long(self.timings.end_to_end_us);
        w.long(self.completed_at_ms);
    }

    pub(super) fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError> {
        let s = limits.max_string_bytes;
        let mut r = Reader::new(body);
        let request_id = r.string("request_id", s)?;
        let status = Status::ALL[r.enum_index("status", Status::ALL.len())?];
        // Error messages may quote the offending input, so they get a looser bound.
        let error = opt(&mut r, "error", |r| r.string("error", 16 * s))?;
        let model_name = r.string("model_name", s)?;
        let model_version = r.string("model_version", s)?;
        let output_shape = r.int_array("output_shape", limits.max_shape_rank)?;
        let mut outputs = Vec::new();
        r.float_array_into("outputs", limits.max_tensor_elements, &mut outputs)?;
        let tier = Tier::ALL[r.enum_index("tier", Tier::ALL.len())?];
        let timings = Timings {
            queue_wait_us: r.long("queue_wait_us")?,
            batch_size: r.int("batch_size")?,
            inference_us: r.long("inference_us")?,
            end_to_end_us: r.long("end_to_end_us")?,
        };
        let completed_at_ms = r.long("completed_at_ms")?;
        r.finish()?;
        Ok(Self {
            request_id,
            status,
            error,
            model_name,
            model_version,
            output_shape,
            outputs,
            tier,
            timings,
            completed_at_ms,
        })
    }
}
