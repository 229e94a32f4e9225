//! The dead-letter record (`schemas/dead_letter.avsc`): a record we could not read, kept byte
//! for byte with where it came from and why it failed.
//!
//! Invariant: `value`, `key` and `headers` are the original bytes, never re-encoded.

use serde::{Deserialize, Serialize};

use super::avro::{Reader, Writer};
use super::error::WireError;
use super::request::opt;

/// One Kafka header of the original record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The name; lossy when the name's bytes are not UTF-8 (see `key_bytes`).
    pub key: String,
    pub value: Option<Vec<u8>>,
    /// The name byte for byte, set only when it is not valid UTF-8: Kafka does not check header
    /// names, and a dead letter keeps the record as it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bytes: Option<Vec<u8>>,
}

impl Header {
    /// A header with a UTF-8 name.
    pub fn new(key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value,
            key_bytes: None,
        }
    }

    /// A header whose name is whatever bytes the producer wrote.
    pub fn from_raw(key: &[u8], value: Option<&[u8]>) -> Self {
        let (key, key_bytes) = match std::str::from_utf8(key) {
            Ok(k) => (k.to_owned(), None),
            Err(_) => (
                String::from_utf8_lossy(key).into_owned(),
                Some(key.to_vec()),
            ),
        };
        Self {
            key,
            value: value.map(<[u8]>::to_vec),
            key_bytes,
        }
    }

    /// The name as the producer wrote it.
    pub fn key_bytes(&self) -> &[u8] {
        self.key_bytes.as_deref().unwrap_or(self.key.as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub error_kind: String,
    pub error: String,
    pub failed_at_ms: i64,
    pub processor: String,
}

impl DeadLetter {
    pub(super) fn encode_avro(&self, out: &mut Vec<u8>) {
        let mut w = Writer { out };
        w.string(&self.source_topic);
        w.long(i64::from(self.source_partition));
        w.long(self.source_offset);
        opt_bytes(&mut w, self.key.as_deref());
        opt_bytes(&mut w, self.value.as_deref());
        if !self.headers.is_empty() {
            w.long(self.headers.len() as i64);
            for h in &self.headers {
                w.string(&h.key);
                opt_bytes(&mut w, h.value.as_deref());
                opt_bytes(&mut w, h.key_bytes.as_deref());
            }
        }
        w.long(0);
        w.string(&self.error_kind);
        w.string(&self.error);
        w.long(self.failed_at_ms);
        w.string(&self.processor);
    }

    /// Dead letters carry whole records, so they are bounded by the record limit, not the
    /// string limit.
    pub(super) fn decode_avro(body: &[u8], max_bytes: usize) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let source_topic = r.string("source_topic", max_bytes)?;
        let source_partition = r.int("source_partition")?;
        let source_offset = r.long("source_offset")?;
        let key = opt(&mut r, "key", |r| {
            r.bytes("key", max_bytes).map(<[u8]>::to_vec)
        })?;
        let value = opt(&mut r, "value", |r| {
            r.bytes("value", max_bytes).map(<[u8]>::to_vec)
        })?;
        let mut headers = Vec::new();
        r.array_blocks("headers", 3, max_bytes, |r, count| {
            for _ in 0..count {
                let key = r.string("headers.key", max_bytes)?;
                let value = opt(r, "headers.value", |r| {
                    r.bytes("headers.value", max_bytes).map(<[u8]>::to_vec)
                })?;
                let key_bytes = opt(r, "headers.key_bytes", |r| {
                    r.bytes("headers.key_bytes", max_bytes).map(<[u8]>::to_vec)
                })?;
                headers.push(Header {
                    key,
                    value,
                    key_bytes,
                });
            }
            Ok(())
        })?;
        let error_kind = r.string("error_kind", max_bytes)?;
        let error = r.string("error", max_bytes)?;
        let failed_at_ms = r.long("failed_at_ms")?;
        let processor = r.string("processor", max_bytes)?;
        r.finish()?;
        Ok(Self {
            source_topic,
            source_partition,
            source_offset,
            key,
            value,
            headers,
            error_kind,
            error,
            failed_at_ms,
            processor,
        })
    }
}

fn opt_bytes(w: &mut Writer<'_>, b: Option<&[u8]>) {
    match b {
        None => w.long(0),
        Some(b) => {
            w.long(1);
            w.bytes(b);
        }
    }
}
