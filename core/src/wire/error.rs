//! The wire layer's one error type. Decode errors mean "not a request we can read" (the record
//! goes to the dead-letter topic); validation errors mean "a request, but not a valid one" (the
//! caller gets an INVALID_INPUT reply). `kind()` is stable: it is the DLQ's `error_kind` and a
//! metric label.

use thiserror::Error;

use crate::tensor::{DType, Dim};

#[derive(Debug, Clone, PartialEq, Error)]
pub enum WireError {
    #[error("empty record value")]
    Empty,
    #[error("unknown framing: first byte 0x{first_byte:02x} is neither Confluent (0x00), Avro single-object (0xc3 0x01) nor JSON ('{{')")]
    UnknownFraming { first_byte: u8 },
    #[error(
        "Confluent schema id {id} is not an accepted {schema} schema id (accepted: {accepted:?})"
    )]
    UnknownSchemaId {
        id: u32,
        accepted: Vec<u32>,
        schema: &'static str,
    },
    #[error("Avro single-object fingerprint {fingerprint:016x} is not one of schema {schema}'s ({})", hex_list(.expected))]
    UnknownFingerprint {
        fingerprint: u64,
        expected: Vec<u64>,
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
    #[error("input {input:?}: invalid shape {shape:?}: {reason}")]
    InvalidShape {
        input: String,
        shape: Vec<i32>,
        reason: &'static str,
    },
    #[error("input {input:?}: shape {got:?} does not match the model's input shape [{}]", dims(.expected))]
    ShapeMismatch {
        input: String,
        expected: Vec<Dim>,
        got: Vec<i32>,
    },
    #[error("input {input:?}: data has {got} values but shape needs {expected}")]
    DataLength {
        input: String,
        expected: usize,
        got: usize,
    },
    #[error("input {input:?}: data[{index}] is {value}: every value must be finite")]
    NonFinite {
        input: String,
        index: usize,
        value: f64,
    },
    #[error("input {input:?} is {got}, the model takes {expected}")]
    DTypeMismatch {
        input: String,
        expected: DType,
        got: DType,
    },
    #[error("input {input:?} is not an input of the model (its inputs: {expected})")]
    UnknownInput { input: String, expected: String },
    #[error("input {0:?} is given twice")]
    DuplicateInput(String),
    #[error("missing input {0}")]
    MissingInput(String),
    #[error("the model's signature is {signature}; a version-1 request carries one float32 input and gets one float32 output: send an io.kbatch.v2.InferenceRequest")]
    NeedsVersion2 { signature: String },
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
                | Self::DTypeMismatch { .. }
                | Self::UnknownInput { .. }
                | Self::DuplicateInput(_)
                | Self::MissingInput(_)
                | Self::NeedsVersion2 { .. }
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
            Self::DTypeMismatch { .. } => "dtype_mismatch",
            Self::UnknownInput { .. } => "unknown_input",
            Self::DuplicateInput(_) => "duplicate_input",
            Self::MissingInput(_) => "missing_input",
            Self::NeedsVersion2 { .. } => "needs_version_2",
            Self::NegativeTimeout(_) => "negative_timeout",
        }
    }
}

fn dims(d: &[Dim]) -> String {
    d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ")
}

fn hex_list(fps: &[u64]) -> String {
    fps.iter()
        .map(|f| format!("{f:016x}"))
        .collect::<Vec<_>>()
        .join(", ")
}
