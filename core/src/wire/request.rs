//! The request record (`schemas/request.avsc`) and its Avro body codec.
//!
//! Invariant: decoding allocates once for the tensor (sized from the block counts, never per
//! value) and a handful of times for the strings; field order follows the schema exactly.

use serde::{Deserialize, Serialize};

use super::avro::{Reader, Writer};
use super::error::WireError;
use crate::config::WireConfig;
use crate::tier::Tier;

/// One inference request, as callers write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub request_id: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    #[serde(default)]
    pub timeout_ms: Option<i32>,
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub priority: Option<Tier>,
    #[serde(default)]
    pub reply_topic: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    pub shape: Vec<i32>,
    pub data: Vec<f32>,
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

    /// Reads the Avro body (after the framing header).
    pub(super) fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError> {
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
        let shape = r.int_array("shape", limits.max_shape_rank)?;
        let mut data = Vec::new();
        r.float_array_into("data", limits.max_tensor_elements, &mut data)?;
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
            shape,
            data,
        })
    }

    /// Appends the Avro body to `out`.
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
        w.int_array(&self.shape);
        w.float_array(&self.data);
    }
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
