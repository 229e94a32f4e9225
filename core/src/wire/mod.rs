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
pub use framing::{Framing, DEAD_LETTER_SCHEMA, FINGERPRINTS, REPLY_SCHEMA, REQUEST_SCHEMA};
pub use reply::{Reply, Status, Timings};
pub use request::Request;
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

    /// Decodes a request in any framing. Does not validate its content: see [`validate`].
    pub fn decode_request(&self, value: &[u8]) -> Result<Request, WireError> {
        if value.len() > self.cfg.max_request_bytes {
            return Err(WireError::TooLarge {
                what: "record",
                size: value.len(),
                limit: self.cfg.max_request_bytes,
            });
        }
        let req: Request = self.decode(value, &self.cfg.request_schema_ids)?;
        if matches!(value.first(), Some(b) if *b != 0x00 && *b != 0xc3) {
            self.check_json_limits(&req)?;
        }
        Ok(req)
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
        encode(req, framing, id, out);
    }

    /// Appends `reply` in the configured reply framing to `out`.
    pub fn encode_reply(&self, reply: &Reply, out: &mut Vec<u8>) {
        encode(reply, self.cfg.reply_format, self.cfg.reply_schema_id, out);
    }

    /// Decodes a reply in any framing (used by callers and the load generator).
    pub fn decode_reply(&self, value: &[u8]) -> Result<Reply, WireError> {
        self.decode(value, &[self.cfg.reply_schema_id])
    }

    /// Appends `dl` in the configured reply framing to `out`.
    pub fn encode_dead_letter(&self, dl: &DeadLetter, out: &mut Vec<u8>) {
        encode(
            dl,
            self.cfg.reply_format,
            self.cfg.dead_letter_schema_id,
            out,
        );
    }

    /// Decodes a dead letter in any framing.
    pub fn decode_dead_letter(&self, value: &[u8]) -> Result<DeadLetter, WireError> {
        self.decode(value, &[self.cfg.dead_letter_schema_id])
    }

    fn decode<R: Record>(&self, value: &[u8], confluent_ids: &[u32]) -> Result<R, WireError> {
        let expect = Expect {
            schema: R::NAME,
            confluent_ids,
            fingerprint: R::fingerprint(),
        };
        match split(value, &expect)? {
            Body::Avro(body) => R::decode_avro(body, &self.cfg),
            Body::Json(body) => {
                serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
            }
        }
    }
}

fn encode<R: Record>(record: &R, framing: Framing, confluent_id: u32, out: &mut Vec<u8>) {
    write_header(framing, confluent_id, R::fingerprint(), out);
    match framing {
        // Our records hold only strings, numbers and byte vectors: JSON cannot fail on them.
        Framing::Json => serde_json::to_writer(out, record).expect("record serializes to JSON"),
        _ => record.encode_avro(out),
    }
}

/// One of the three bundled record types.
trait Record: serde::Serialize + serde::de::DeserializeOwned {
    const NAME: &'static str;
    fn fingerprint() -> u64;
    fn encode_avro(&self, out: &mut Vec<u8>);
    fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError>;
}

impl Record for Request {
    const NAME: &'static str = "InferenceRequest";
    fn fingerprint() -> u64 {
        FINGERPRINTS.request
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        Request::encode_avro(self, out)
    }
    fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError> {
        Request::decode_avro(body, limits)
    }
}

impl Record for Reply {
    const NAME: &'static str = "InferenceReply";
    fn fingerprint() -> u64 {
        FINGERPRINTS.reply
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        Reply::encode_avro(self, out)
    }
    fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError> {
        Reply::decode_avro(body, limits)
    }
}

impl Record for DeadLetter {
    const NAME: &'static str = "DeadLetter";
    fn fingerprint() -> u64 {
        FINGERPRINTS.dead_letter
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        DeadLetter::encode_avro(self, out)
    }
    /// A dead letter wraps a whole record plus headers: allow it twice the record limit.
    fn decode_avro(body: &[u8], limits: &WireConfig) -> Result<Self, WireError> {
        DeadLetter::decode_avro(body, limits.max_request_bytes.saturating_mul(2))
    }
}
