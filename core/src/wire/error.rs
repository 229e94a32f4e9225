//! The wire layer's one error type. Decode errors mean "not a request we can read" (the record
//! goes to the dead-letter topic); validation errors mean "a request, but not a valid one" (the
//! caller gets an INVALID_INPUT reply). `kind()` is stable: it is the DLQ's `error_kind` and a
//! metric label.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum WireError {
    #[error("empty record value")]
    Empty,
    #[error("unknown framing: first byte 0x{first_byte:02x} is neither Confluent (0x00), Avro single-object (0xc3 0x01) nor JSON ('{{')")]
    UnknownFraming { first_byte: u8 },
    #[error(
        "Confluent schema id {id} is not an accepted request schema id (accepted: {accepted:?})"
    )]
    UnknownSchemaId { id: u32, accepted: Vec<u32> },
    #[error("Avro single-object fingerprint {fingerprint:016x} does not match schema {schema} ({expected:016x})")]
    UnknownFingerprint {
        fingerprint: u64,
        expected: u64,
        schema: &'static str,
    },
    #[error("record truncated while reading `{field}`")]
    Truncated { field: &'static str },
    #[error("malformed `{field}`: {reason}")]
    Malformed {
        field: &'static str,
        reason: &'static str,
    },
    #[error("`{what}` too large: {size} > limit {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{count} trailing bytes after the record")]
    TrailingBytes { count: usize },
    #[error("invalid JSON request: {0}")]
    Json(String),

    #[error("invalid request_id: {0}")]
    InvalidRequestId(&'static str),
    #[error("invalid shape {shape:?}: {reason}")]
    InvalidShape {
        shape: Vec<i32>,
        reason: &'static str,
    },
    #[error("shape {got:?} does not match the model's input shape {expected:?}")]
    ShapeMismatch { expected: Vec<usize>, got: Vec<i32> },
    #[error("data has {got} values but shape needs {expected}")]
    DataLength { expected: usize, got: usize },
    #[error("data[{index}] is {value}: every value must be finite")]
    NonFinite { index: usize, value: f32 },
    #[error("timeout_ms {0} must not be negative")]
    NegativeTimeout(i32),
}

impl WireError {
    /// True for errors about a readable request's content (answered INVALID_INPUT), false for
    /// records that cannot be read as a request at all (dead-lettered).
    pub fn is_validation(&self) -> bool {
        matches!(
            self,
            Self::InvalidRequestId(_)
                | Self::InvalidShape { .. }
                | Self::ShapeMismatch { .. }
                | Self::DataLength { .. }
                | Self::NonFinite { .. }
                | Self::NegativeTimeout(_)
        )
    }

    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownFraming { .. } => "unknown_framing",
            Self::UnknownSchemaId { .. } => "unknown_schema_id",
            Self::UnknownFingerprint { .. } => "unknown_fingerprint",
            Self::Truncated { .. } => "truncated",
            Self::Malformed { .. } => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::Json(_) => "json",
            Self::InvalidRequestId(_) => "invalid_request_id",
            Self::InvalidShape { .. } => "invalid_shape",
            Self::ShapeMismatch { .. } => "shape_mismatch",
            Self::DataLength { .. } => "data_length",
            Self::NonFinite { .. } => "non_finite",
            Self::NegativeTimeout(_) => "negative_timeout",
        }
    }
}
