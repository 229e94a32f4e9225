//! The `wire` section: framing of replies and dead letters, accepted schema ids, size limits.
//!
//! Invariant: limits here bound every allocation the decoder makes for one record.

use serde::{Deserialize, Serialize};

/// How a record's value is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Confluent wire format: magic byte 0x00, 4-byte big-endian schema id, Avro binary.
    Confluent,
    /// Avro single-object encoding: 0xC3 0x01, 8-byte little-endian CRC-64-AVRO fingerprint, Avro binary.
    SingleObject,
    /// JSON, for debugging by hand.
    Json,
}

/// The `wire` configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireConfig {
    /// Confluent schema ids accepted for version-1 requests (`io.kbatch.v1.InferenceRequest`; a
    /// registry may hold several compatible ids).
    pub request_schema_ids: Vec<u32>,
    /// Confluent schema ids accepted for version-2 requests (`io.kbatch.v2.InferenceRequest`).
    pub request_v2_schema_ids: Vec<u32>,
    /// Confluent schema id written on replies to version-1 requests.
    pub reply_schema_id: u32,
    /// Confluent schema id written on replies to version-2 requests.
    pub reply_v2_schema_id: u32,
    /// Confluent schema id written on dead letters.
    pub dead_letter_schema_id: u32,
    /// Framing of replies and dead letters; requests are accepted in every framing.
    pub reply_format: Framing,
    /// Largest request value in bytes.
    pub max_request_bytes: usize,
    /// Most tensor values in one request (all its tensors together).
    pub max_tensor_elements: usize,
    /// Most tensors in one version-2 request or reply.
    pub max_tensors: usize,
    /// Most dimensions in one request's shape.
    pub max_shape_rank: usize,
    /// Longest string field (ids, topic names, model names) in bytes.
    pub max_string_bytes: usize,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            request_schema_ids: vec![1],
            request_v2_schema_ids: vec![4],
            reply_schema_id: 2,
            reply_v2_schema_id: 5,
            dead_letter_schema_id: 3,
            reply_format: Framing::SingleObject,
            max_request_bytes: 1 << 20,
            max_tensor_elements: 1 << 18,
            max_tensors: 16,
            max_shape_rank: 8,
            max_string_bytes: 256,
        }
    }
}
