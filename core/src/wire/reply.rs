//! The reply record in its two schema versions (`schemas/reply.avsc`: one float32 output;
//! `schemas/reply_v2.avsc`: the model's named outputs) and their Avro body codecs.
//!
//! Invariant: exactly one reply is written per accepted request, in the schema version of that
//! request; its outputs are empty unless `status` is OK.

use serde::{Deserialize, Serialize};

use super::avro::{Reader, Writer};
use super::error::WireError;
use super::request::{opt, read_tensors, write_tensors, SchemaVersion};
use crate::config::WireConfig;
use crate::tensor::Tensor;
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

/// A reply's outputs, in its request's schema version.
#[derive(Debug, Clone, PartialEq)]
pub enum Outputs {
    /// Version 1: the model's first output, float32 (`output_shape` is per request).
    V1 {
        output_shape: Vec<i32>,
        outputs: Vec<f32>,
    },
    /// Version 2: every output of the model, named, in the model's order.
    V2(Vec<Tensor>),
}

impl Outputs {
    /// No outputs (an error reply), in `version`.
    pub fn none(version: SchemaVersion) -> Self {
        match version {
            SchemaVersion::V1 => Outputs::V1 {
                output_shape: Vec::new(),
                outputs: Vec::new(),
            },
            SchemaVersion::V2 => Outputs::V2(Vec::new()),
        }
    }

    pub fn version(&self) -> SchemaVersion {
        match self {
            Outputs::V1 { .. } => SchemaVersion::V1,
            Outputs::V2(_) => SchemaVersion::V2,
        }
    }

    /// The first output's values when they are float32 (all a version-1 reply carries); empty
    /// otherwise.
    pub fn first_f32(&self) -> &[f32] {
        match self {
            Outputs::V1 { outputs, .. } => outputs,
            Outputs::V2(ts) => match ts.first().map(|t| &t.data) {
                Some(crate::tensor::TensorData::F32(v)) => v,
                _ => &[],
            },
        }
    }

    /// Whether there are none (every error reply).
    pub fn is_empty(&self) -> bool {
        match self {
            Outputs::V1 { outputs, .. } => outputs.is_empty(),
            Outputs::V2(ts) => ts.is_empty(),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReplyForm", into = "ReplyForm")]
pub struct Reply {
    pub request_id: String,
    pub status: Status,
    pub error: Option<String>,
    pub model_name: String,
    pub model_version: String,
    pub outputs: Outputs,
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
        match &self.outputs {
            Outputs::V1 {
                output_shape,
                outputs,
            } => {
                w.int_array(output_shape);
                w.float_array(outputs);
            }
            Outputs::V2(ts) => write_tensors(&mut w, ts),
        }
        w.long(self.tier.index() as i64);
        w.long(self.timings.queue_wait_us);
        w.long(i64::from(self.timings.batch_size));
        w.long(self.timings.inference_us);
        w.long(self.timings.end_to_end_us);
        w.long(self.completed_at_ms);
    }

    pub(super) fn decode_avro(
        body: &[u8],
        version: SchemaVersion,
        limits: &WireConfig,
    ) -> Result<Self, WireError> {
        let s = limits.max_string_bytes;
        let mut r = Reader::new(body);
        let request_id = r.string("request_id", s)?;
        let status = Status::ALL[r.enum_index("status", Status::ALL.len())?];
        // Error messages may quote the offending input, so they get a looser bound.
        let error = opt(&mut r, "error", |r| r.string("error", 16 * s))?;
        let model_name = r.string("model_name", s)?;
        let model_version = r.string("model_version", s)?;
        let outputs = match version {
            SchemaVersion::V1 => {
                let output_shape = r.int_array("output_shape", limits.max_shape_rank)?;
                let mut outputs = Vec::new();
                r.float_array_into("outputs", limits.max_tensor_elements, &mut outputs)?;
                Outputs::V1 {
                    output_shape,
                    outputs,
                }
            }
            SchemaVersion::V2 => Outputs::V2(read_tensors(&mut r, "outputs", limits)?),
        };
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
            outputs,
            tier,
            timings,
            completed_at_ms,
        })
    }
}

/// A reply as JSON writes it: version 1 has `output_shape` and float `outputs`, version 2 has
/// `outputs` as named tensors.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyForm {
    request_id: String,
    status: Status,
    #[serde(default)]
    error: Option<String>,
    model_name: String,
    model_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_shape: Option<Vec<i32>>,
    outputs: OutputsForm,
    tier: Tier,
    timings: Timings,
    completed_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OutputsForm {
    Values(Vec<f32>),
    Tensors(Vec<Tensor>),
}

impl TryFrom<ReplyForm> for Reply {
    type Error = &'static str;
    fn try_from(f: ReplyForm) -> Result<Self, Self::Error> {
        let outputs = match (f.output_shape, f.outputs) {
            (Some(output_shape), OutputsForm::Values(outputs)) => Outputs::V1 {
                output_shape,
                outputs,
            },
            (None, OutputsForm::Tensors(ts)) => Outputs::V2(ts),
            (None, OutputsForm::Values(v)) if v.is_empty() => Outputs::V2(Vec::new()),
            _ => {
                return Err("a reply carries either `output_shape` and float `outputs` \
                            (version 1) or `outputs` as tensors (version 2)")
            }
        };
        Ok(Reply {
            request_id: f.request_id,
            status: f.status,
            error: f.error,
            model_name: f.model_name,
            model_version: f.model_version,
            outputs,
            tier: f.tier,
            timings: f.timings,
            completed_at_ms: f.completed_at_ms,
        })
    }
}

impl From<Reply> for ReplyForm {
    fn from(r: Reply) -> Self {
        let (output_shape, outputs) = match r.outputs {
            Outputs::V1 {
                output_shape,
                outputs,
            } => (Some(output_shape), OutputsForm::Values(outputs)),
            Outputs::V2(ts) => (None, OutputsForm::Tensors(ts)),
        };
        ReplyForm {
            request_id: r.request_id,
            status: r.status,
            error: r.error,
            model_name: r.model_name,
            model_version: r.model_version,
            output_shape,
            outputs,
            tier: r.tier,
            timings: r.timings,
            completed_at_ms: r.completed_at_ms,
        }
    }
}
