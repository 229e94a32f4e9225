//! The wire contract: Avro records for requests, replies and dead letters (`schemas/`), in
//! Confluent framing, Avro single-object encoding or JSON, plus request validation and the W3C
//! `traceparent` header that requests and replies carry (`trace`).
//!
//! Invariant: `decode_request` either returns a request whose every field was read from the
//! record under the bundled schema, or a typed `WireError`; it never panics on any input and
//! never allocates more than the configured limits allow.

mod avro;
mod dead_letter;
mod error;
mod framing;
mod reply;
mod request;
#[cfg(test)]
mod tests;
mod trace;
mod validate;

pub use crate::config::WireConfig;
pub use crate::tier::Tier;
pub use dead_letter::{DeadLetter, Header};
pub use error::WireError;
pub use framing::{
    Framing, DEAD_LETTER_SCHEMA, FINGERPRINTS, REPLY_SCHEMA, REPLY_V2_SCHEMA, REQUEST_SCHEMA,
    REQUEST_V2_SCHEMA,
};
pub use reply::{Outputs, Reply, Status, Timings};
pub use request::{Inputs, Request, SchemaVersion, V1Mut};
pub use trace::TraceContext;
pub use validate::{validate, MAX_REQUEST_ID_BYTES};

use framing::{split, write_header, Body, Expect};

/// Encodes and decodes kbatch's records under one `wire` configuration.
#[derive(Debug, Clone)]
pub struct WireCodec {
    cfg: WireConfig,
}

impl WireCodec {
    pub fn new(cfg: &WireConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    pub fn config(&self) -> &WireConfig {
        &self.cfg
    }

    /// Decodes a request of either schema version in any framing. Does not validate its
    /// content: see [`validate`].
    pub fn decode_request(&self, value: &[u8]) -> Result<Request, WireError> {
        if value.len() > self.cfg.max_request_bytes {
            return Err(WireError::TooLarge {
                what: "record",
                size: value.len(),
                limit: self.cfg.max_request_bytes,
            });
        }
        let versions = [
            Expect {
                version: SchemaVersion::V1,
                confluent_ids: &self.cfg.request_schema_ids,
                fingerprint: FINGERPRINTS.request,
            },
            Expect {
                version: SchemaVersion::V2,
                confluent_ids: &self.cfg.request_v2_schema_ids,
                fingerprint: FINGERPRINTS.request_v2,
            },
        ];
        match split(value, "InferenceRequest", &versions)? {
            Body::Avro(body, version) => Request::decode_avro(body, version, &self.cfg),
            Body::Json(body) => {
                let req = json(body)?;
                self.check_json_limits(&req)?;
                Ok(req)
            }
        }
    }

    /// JSON is parsed by serde before we can look at sizes; the record-size limit already bounds
    /// the memory, this keeps the per-field limits the same as for Avro.
    fn check_json_limits(&self, req: &Request) -> Result<(), WireError> {
        let too_large = |what, size, limit| {
            if size > limit {
                Err(WireError::TooLarge { what, size, limit })
            } else {
                Ok(())
            }
        };
        let c = &self.cfg;
        let tensors = req.inputs.tensors();
        too_large("inputs", tensors.len(), c.max_tensors)?;
        too_large("data", req.inputs.element_count(), c.max_tensor_elements)?;
        for t in tensors {
            too_large("shape", t.shape.len(), c.max_shape_rank)?;
            too_large("string", t.name.len(), c.max_string_bytes)?;
        }
        let strings = [
            Some(&req.request_id),
            req.model_name.as_ref(),
            req.model_version.as_ref(),
            req.reply_topic.as_ref(),
            req.client_id.as_ref(),
        ];
        for s in strings.into_iter().flatten() {
            too_large("string", s.len(), c.max_string_bytes)?;
        }
        Ok(())
    }

    /// Appends `req` in `framing` and in its own schema version to `out` (used by producers and
    /// the load generator).
    pub fn encode_request(&self, req: &Request, framing: Framing, out: &mut Vec<u8>) {
        let (ids, fingerprint) = match req.inputs.version() {
            SchemaVersion::V1 => (&self.cfg.request_schema_ids, FINGERPRINTS.request),
            SchemaVersion::V2 => (&self.cfg.request_v2_schema_ids, FINGERPRINTS.request_v2),
        };
        let id = ids.first().copied().unwrap_or_default();
        encode(req, framing, id, fingerprint, out, Request::encode_avro);
    }

    /// Appends `reply` in the configured reply framing, in its own schema version, to `out`.
    pub fn encode_reply(&self, reply: &Reply, out: &mut Vec<u8>) {
        let (id, fingerprint) = match reply.outputs.version() {
            SchemaVersion::V1 => (self.cfg.reply_schema_id, FINGERPRINTS.reply),
            SchemaVersion::V2 => (self.cfg.reply_v2_schema_id, FINGERPRINTS.reply_v2),
        };
        let framing = self.cfg.reply_format;
        encode(reply, framing, id, fingerprint, out, Reply::encode_avro);
    }

    /// Decodes a reply of either schema version in any framing (used by callers and the load
    /// generator).
    pub fn decode_reply(&self, value: &[u8]) -> Result<Reply, WireError> {
        let versions = [
            Expect {
                version: SchemaVersion::V1,
                confluent_ids: std::slice::from_ref(&self.cfg.reply_schema_id),
                fingerprint: FINGERPRINTS.reply,
            },
            Expect {
                version: SchemaVersion::V2,
                confluent_ids: std::slice::from_ref(&self.cfg.reply_v2_schema_id),
                fingerprint: FINGERPRINTS.reply_v2,
            },
        ];
        match split(value, "InferenceReply", &versions)? {
            Body::Avro(body, version) => Reply::decode_avro(body, version, &self.cfg),
            Body::Json(body) => json(body),
        }
    }

    /// Appends `dl` in the configured reply framing to `out`.
    pub fn encode_dead_letter(&self, dl: &DeadLetter, out: &mut Vec<u8>) {
        let (framing, id) = (self.cfg.reply_format, self.cfg.dead_letter_schema_id);
        let fingerprint = FINGERPRINTS.dead_letter;
        encode(dl, framing, id, fingerprint, out, DeadLetter::encode_avro);
    }

    /// Decodes a dead letter in any framing.
    pub fn decode_dead_letter(&self, value: &[u8]) -> Result<DeadLetter, WireError> {
        let only = [Expect {
            version: (),
            confluent_ids: std::slice::from_ref(&self.cfg.dead_letter_schema_id),
            fingerprint: FINGERPRINTS.dead_letter,
        }];
        match split(value, "DeadLetter", &only)? {
            // A dead letter wraps a whole record plus headers: allow it twice the record limit.
            Body::Avro(body, ()) => {
                DeadLetter::decode_avro(body, self.cfg.max_request_bytes.saturating_mul(2))
            }
            Body::Json(body) => json(body),
        }
    }
}

fn json<R: serde::de::DeserializeOwned>(body: &[u8]) -> Result<R, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
}

fn encode<R: serde::Serialize>(
    record: &R,
    framing: Framing,
    confluent_id: u32,
    fingerprint: u64,
    out: &mut Vec<u8>,
    encode_avro: fn(&R, &mut Vec<u8>),
) {
    write_header(framing, confluent_id, fingerprint, out);
    match framing {
        // Our records hold only strings, numbers and byte vectors: JSON cannot fail on them.
        Framing::Json => serde_json::to_writer(out, record).expect("record serializes to JSON"),
        _ => encode_avro(record, out),
    }
}
