//! The request record in its two schema versions (`schemas/request.avsc`, one float32 tensor;
//! `schemas/request_v2.avsc`, named tensors of several element types) and their Avro body codecs.
//!
//! Invariants: decoding allocates once per tensor (sized from the block or byte counts, never
//! per value) and a handful of times for the strings; field order follows the schema exactly; a
//! request is written back in the version it was read in.

use serde::{Deserialize, Serialize};

use super::avro::{Reader, Writer};
use super::error::WireError;
use crate::config::WireConfig;
use crate::tensor::{DType, Tensor, TensorData};
use crate::tier::Tier;

/// Which version of the request contract a record uses; its reply uses the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaVersion {
    /// `io.kbatch.v1`: one float32 tensor (`shape`, `data`), one float32 output.
    V1,
    /// `io.kbatch.v2`: named tensors in, named tensors out.
    V2,
}

/// A request's input tensors, as its schema version carries them.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// Version 1: one float32 tensor (unnamed: it is the model's only input).
    V1(Tensor),
    /// Version 2: named tensors. Validation puts them in the model's input order.
    V2(Vec<Tensor>),
}

impl Inputs {
    /// A version-1 input: one float32 tensor of `shape`.
    pub fn v1(shape: Vec<i32>, data: Vec<f32>) -> Self {
        Inputs::V1(Tensor::new(String::new(), shape, TensorData::F32(data)))
    }

    /// The shape and values of a version-1 float32 input, to change in place (a producer that
    /// reuses one request as a template); `None` for any other input.
    pub fn v1_mut(&mut self) -> Option<V1Mut<'_>> {
        match self {
            Inputs::V1(Tensor {
                shape,
                data: TensorData::F32(values),
                ..
            }) => Some(V1Mut { shape, values }),
            _ => None,
        }
    }

    /// The tensors, whatever the version.
    pub fn tensors(&self) -> &[Tensor] {
        match self {
            Inputs::V1(t) => std::slice::from_ref(t),
            Inputs::V2(ts) => ts,
        }
    }

    pub fn version(&self) -> SchemaVersion {
        match self {
            Inputs::V1(_) => SchemaVersion::V1,
            Inputs::V2(_) => SchemaVersion::V2,
        }
    }

    /// Values in all tensors together.
    pub fn element_count(&self) -> usize {
        self.tensors().iter().map(|t| t.data.len()).sum()
    }
}

/// A version-1 input's parts, borrowed for change.
pub struct V1Mut<'a> {
    pub shape: &'a mut Vec<i32>,
    pub values: &'a mut Vec<f32>,
}

/// One inference request, as callers write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RequestForm", into = "RequestForm")]
pub struct Request {
    pub request_id: String,
    pub created_at_ms: i64,
    pub deadline_ms: Option<i64>,
    pub timeout_ms: Option<i32>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub priority: Option<Tier>,
    pub reply_topic: Option<String>,
    pub client_id: Option<String>,
    pub inputs: Inputs,
}

impl Request {
    /// The earlier of the absolute deadline and `created_at_ms + timeout_ms`, if either is set.
    pub fn effective_deadline_ms(&self) -> Option<i64> {
        let from_timeout = self
            .timeout_ms
            .map(|t| self.created_at_ms.saturating_add(i64::from(t)));
        match (self.deadline_ms, from_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reads an Avro body (after the framing header) written with schema `version`.
    pub(super) fn decode_avro(
        body: &[u8],
        version: SchemaVersion,
        limits: &WireConfig,
    ) -> Result<Self, WireError> {
        let s = limits.max_string_bytes;
        let mut r = Reader::new(body);
        let request_id = r.string("request_id", s)?;
        let created_at_ms = r.long("created_at_ms")?;
        let deadline_ms = opt(&mut r, "deadline_ms", |r| r.long("deadline_ms"))?;
        let timeout_ms = opt(&mut r, "timeout_ms", |r| r.int("timeout_ms"))?;
        let model_name = opt(&mut r, "model_name", |r| r.string("model_name", s))?;
        let model_version = opt(&mut r, "model_version", |r| r.string("model_version", s))?;
        let priority = opt(&mut r, "priority", |r| {
            let i = r.enum_index("priority", Tier::ALL.len())?;
            Ok(Tier::ALL[i])
        })?;
        let reply_topic = opt(&mut r, "reply_topic", |r| r.string("reply_topic", s))?;
        let client_id = opt(&mut r, "client_id", |r| r.string("client_id", s))?;
        let inputs = match version {
            SchemaVersion::V1 => {
                let shape = r.int_array("shape", limits.max_shape_rank)?;
                let mut data = Vec::new();
                r.float_array_into("data", limits.max_tensor_elements, &mut data)?;
                Inputs::v1(shape, data)
            }
            SchemaVersion::V2 => Inputs::V2(read_tensors(&mut r, "inputs", limits)?),
        };
        r.finish()?;
        Ok(Self {
            request_id,
            created_at_ms,
            deadline_ms,
            timeout_ms,
            model_name,
            model_version,
            priority,
            reply_topic,
            client_id,
            inputs,
        })
    }

    /// Appends the Avro body, in the request's own schema version, to `out`.
    pub(super) fn encode_avro(&self, out: &mut Vec<u8>) {
        let mut w = Writer { out };
        w.string(&self.request_id);
        w.long(self.created_at_ms);
        w.opt_long(self.deadline_ms);
        w.opt_long(self.timeout_ms.map(i64::from));
        w.opt_string(self.model_name.as_deref());
        w.opt_string(self.model_version.as_deref());
        w.opt_long(self.priority.map(|p| p.index() as i64));
        w.opt_string(self.reply_topic.as_deref());
        w.opt_string(self.client_id.as_deref());
        match &self.inputs {
            Inputs::V1(t) => {
                w.int_array(&t.shape);
                match &t.data {
                    TensorData::F32(v) => w.float_array(v),
                    // Only a hand-built request can hold another type in a version-1 input;
                    // its values are written as the float32 the schema carries.
                    other => w.float_array(&other.clone().into_f32()),
                }
            }
            Inputs::V2(ts) => write_tensors(&mut w, ts),
        }
    }
}

/// Reads an `array<Tensor>` (`io.kbatch.v2.Tensor`), bounded by `max_tensors` tensors and
/// `max_tensor_elements` values in all of them together.
pub(super) fn read_tensors(
    r: &mut Reader<'_>,
    field: &'static str,
    limits: &WireConfig,
) -> Result<Vec<Tensor>, WireError> {
    let mut tensors = Vec::new();
    let mut elements = 0usize;
    r.array_blocks(field, 1, limits.max_tensors, |r, count| {
        tensors.reserve(count);
        for _ in 0..count {
            let name = r.string("name", limits.max_string_bytes)?;
            let dtype = DType::ALL[r.enum_index("dtype", DType::ALL.len())?];
            let shape = r.int_array("shape", limits.max_shape_rank)?;
            let room = limits.max_tensor_elements - elements;
            let bytes = r.bytes("data", room.saturating_mul(dtype.size()))?;
            if !bytes.len().is_multiple_of(dtype.size()) {
                return Err(WireError::Malformed {
                    field: "data",
                    reason: "byte length is not a whole number of elements of its dtype",
                });
            }
            elements += bytes.len() / dtype.size();
            let data = TensorData::from_le_bytes(dtype, bytes);
            tensors.push(Tensor::new(name, shape, data));
        }
        Ok(())
    })?;
    Ok(tensors)
}

/// Writes an `array<Tensor>` as a single block.
pub(super) fn write_tensors(w: &mut Writer<'_>, tensors: &[Tensor]) {
    if !tensors.is_empty() {
        w.long(tensors.len() as i64);
        for t in tensors {
            w.string(&t.name);
            w.long(t.dtype().index() as i64);
            w.int_array(&t.shape);
            w.long(t.data.byte_len() as i64);
            t.data.write_le_bytes(w.out);
        }
    }
    w.long(0);
}

/// Reads a `["null", T]` union.
pub(super) fn opt<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, WireError>,
) -> Result<Option<T>, WireError> {
    if r.optional(field)? {
        read(r).map(Some)
    } else {
        Ok(None)
    }
}

/// A request as JSON writes it: version 1 has `shape` and `data`, version 2 has `inputs`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestForm {
    request_id: String,
    created_at_ms: i64,
    #[serde(default)]
    deadline_ms: Option<i64>,
    #[serde(default)]
    timeout_ms: Option<i32>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    priority: Option<Tier>,
    #[serde(default)]
    reply_topic: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shape: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<Tensor>>,
}

impl TryFrom<RequestForm> for Request {
    type Error = &'static str;
    fn try_from(f: RequestForm) -> Result<Self, Self::Error> {
        let inputs = match (f.shape, f.data, f.inputs) {
            (Some(shape), Some(data), None) => Inputs::v1(shape, data),
            (None, None, Some(inputs)) => Inputs::V2(inputs),
            _ => {
                return Err(
                    "a request carries either `shape` and `data` (version 1) or \
                            `inputs` (version 2)",
                )
            }
        };
        Ok(Request {
            request_id: f.request_id,
            created_at_ms: f.created_at_ms,
            deadline_ms: f.deadline_ms,
            timeout_ms: f.timeout_ms,
            model_name: f.model_name,
            model_version: f.model_version,
            priority: f.priority,
            reply_topic: f.reply_topic,
            client_id: f.client_id,
            inputs,
        })
    }
}

impl From<Request> for RequestForm {
    fn from(r: Request) -> Self {
        let (shape, data, inputs) = match r.inputs {
            Inputs::V1(t) => (Some(t.shape), Some(t.data.into_f32()), None),
            Inputs::V2(ts) => (None, None, Some(ts)),
        };
        RequestForm {
            request_id: r.request_id,
            created_at_ms: r.created_at_ms,
            deadline_ms: r.deadline_ms,
            timeout_ms: r.timeout_ms,
            model_name: r.model_name,
            model_version: r.model_version,
            priority: r.priority,
            reply_topic: r.reply_topic,
            client_id: r.client_id,
            shape,
            data,
            inputs,
        }
    }
}
