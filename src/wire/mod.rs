//! The wire contract: Avro records for requests, replies and dead letters (`schemas/`), in
//! Confluent framing, Avro single-object encoding or JSON, plus request validation.
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
mod validate;

pub use crate::config::WireConfig;
pub use crate::tier::Tier;
pub use dead_letter::{DeadLetter, Header};
pub use error::WireError;
pub use framing::{Framing, DEAD_LETTER_SCHEMA, FINGERPRINTS, REPLY_SCHEMA, REQUEST_SCHEMA};
pub use reply::{Reply, Status, Timings};
pub use request::Request;
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

    /// Decodes a request in any framing. Does not validate its content: see [`validate`].
    pub fn decode_request(&self, value: &[u8]) -> Result<Request, WireError> {
        if value.len() > self.cfg.max_request_bytes {
            return Err(WireError::TooLarge {
                what: "record",
                size: value.len(),
                limit: self.cfg.max_request_bytes,
            });
        }
        let expect = Expect {
            schema: "InferenceRequest",
            confluent_ids: &self.cfg.request_schema_ids,
            fingerprint: FINGERPRINTS.request,
        };
        match split(value, &expect)? {
            Body::Avro(body) => Request::decode_avro(body, &self.cfg),
            Body::Json(body) => {
                let req: Request =
                    serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))?;
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
        too_large("data", req.data.len(), self.cfg.max_tensor_elements)?;
        too_large("shape", req.shape.len(), self.cfg.max_shape_rank)?;
        let strings = [
            Some(&req.request_id),
            req.model_name.as_ref(),
            req.model_version.as_ref(),
            req.reply_topic.as_ref(),
            req.client_id.as_ref(),
        ];
        for s in strings.into_iter().flatten() {
            too_large("string", s.len(), self.cfg.max_string_bytes)?;
        }
        Ok(())
    }

    /// Appends `req` in `framing` to `out` (used by producers and the load generator).
    pub fn encode_request(&self, req: &Request, framing: Framing, out: &mut Vec<u8>) {
        let id = self
            .cfg
            .request_schema_ids
            .first()
            .copied()
            .unwrap_or_default();
        write_header(framing, id, FINGERPRINTS.request, out);
        match framing {
            Framing::Json => {
                serde_json::to_writer(out, req).expect("a request always serializes to JSON")
            }
            _ => req.encode_avro(out),
        }
    }

    /// Appends `reply` in the configured reply framing to `out`.
    pub fn encode_reply(&self, reply: &Reply, out: &mut Vec<u8>) {
        let framing = self.cfg.reply_format;
        write_header(framing, self.cfg.reply_schema_id, FINGERPRINTS.reply, out);
        match framing {
            Framing::Json => {
                serde_json::to_writer(out, reply).expect("a reply always serializes to JSON")
            }
            _ => reply.encode_avro(out),
        }
    }

    /// Decodes a reply in any framing (used by callers and the load generator).
    pub fn decode_reply(&self, value: &[u8]) -> Result<Reply, WireError> {
        let ids = [self.cfg.reply_schema_id];
        let expect = Expect {
            schema: "InferenceReply",
            confluent_ids: &ids,
            fingerprint: FINGERPRINTS.reply,
        };
        match split(value, &expect)? {
            Body::Avro(body) => Reply::decode_avro(body, &self.cfg),
            Body::Json(body) => {
                serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
            }
        }
    }

    /// Appends `dl` in the configured reply framing to `out`.
    pub fn encode_dead_letter(&self, dl: &DeadLetter, out: &mut Vec<u8>) {
        let framing = self.cfg.reply_format;
        write_header(
            framing,
            self.cfg.dead_letter_schema_id,
            FINGERPRINTS.dead_letter,
            out,
        );
        match framing {
            Framing::Json => {
                serde_json::to_writer(out, dl).expect("a dead letter always serializes to JSON")
            }
            _ => dl.encode_avro(out),
        }
    }

    /// Decodes a dead letter in any framing.
    pub fn decode_dead_letter(&self, value: &[u8]) -> Result<DeadLetter, WireError> {
        let ids = [self.cfg.dead_letter_schema_id];
        let expect = Expect {
            schema: "DeadLetter",
            confluent_ids: &ids,
            fingerprint: FINGERPRINTS.dead_letter,
        };
        // A dead letter wraps a whole record plus headers, so allow it a margin over the record limit.
        let max = self.cfg.max_request_bytes.saturating_mul(2);
        match split(value, &expect)? {
            Body::Avro(body) => DeadLetter::decode_avro(body, max),
            Body::Json(body) => {
                serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
            }
        }
    }
}
