//! Tensors as requests carry them and models take them: an element type (`DType`), typed values
//! (`TensorData`), a named tensor of one request (`Tensor`) and what a model declares for one of
//! its inputs or outputs (`TensorSpec`, per-row dimensions that may be dynamic).
//!
//! Invariants: a `TensorData` holds values of exactly one element type, and every conversion to
//! or from bytes is little-endian and row-major whatever the host; a `Tensor`'s `shape` is per
//! request (no batch dimension) and, once validated, its product equals `data.len()`.

mod data;
mod spec;

pub use data::{DType, TensorData};
pub use spec::{Dim, TensorSpec};

use serde::{Deserialize, Serialize};

/// One named tensor of one request or reply, without a batch dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "TensorForm", into = "TensorForm")]
pub struct Tensor {
    /// The model input or output it is; empty for the one tensor of a version-1 request.
    pub name: String,
    /// Per-request dimensions (no batch dimension).
    pub shape: Vec<i32>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(name: impl Into<String>, shape: Vec<i32>, data: TensorData) -> Self {
        Self {
            name: name.into(),
            shape,
            data,
        }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
}

/// A tensor as JSON writes it: `data` is a list of numbers read under `dtype`, so int64 values
/// keep every bit (they never pass through a float).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorForm {
    name: String,
    dtype: DType,
    shape: Vec<i32>,
    data: data::Numbers,
}

impl TryFrom<TensorForm> for Tensor {
    type Error = String;
    fn try_from(f: TensorForm) -> Result<Self, String> {
        let data = f
            .data
            .into_data(f.dtype)
            .map_err(|e| format!("tensor {:?}: {e}", f.name))?;
        Ok(Tensor::new(f.name, f.shape, data))
    }
}

impl From<Tensor> for TensorForm {
    fn from(t: Tensor) -> Self {
        TensorForm {
            name: t.name,
            dtype: t.data.dtype(),
            shape: t.shape,
            data: data::Numbers::from(t.data),
        }
    }
}

#[cfg(test)]
mod tests;
