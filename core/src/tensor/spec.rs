//! What a model declares for one of its inputs or outputs.
//!
//! Invariant: a `Dim` is either a positive fixed size or dynamic; zero-sized dimensions are
//! refused when a spec is built or read, so a request matching a spec always has data.

use serde::{Deserialize, Serialize};

use super::DType;

/// One dimension after the batch dimension: a fixed size, or dynamic (any positive size; the
/// ONNX file names it with a symbol or -1). Written as an integer, -1 for dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum Dim {
    Fixed(usize),
    Dynamic,
}

impl Dim {
    /// Whether a request dimension of `size` fits.
    pub fn accepts(self, size: usize) -> bool {
        match self {
            Dim::Fixed(d) => d == size,
            Dim::Dynamic => size > 0,
        }
    }
}

impl TryFrom<i64> for Dim {
    type Error = String;
    fn try_from(d: i64) -> Result<Self, String> {
        match d {
            -1 => Ok(Dim::Dynamic),
            d if d > 0 => usize::try_from(d)
                .map(Dim::Fixed)
                .map_err(|e| e.to_string()),
            d => Err(format!(
                "dimension {d}: expected a positive size or -1 (dynamic)"
            )),
        }
    }
}

impl From<Dim> for i64 {
    fn from(d: Dim) -> i64 {
        match d {
            Dim::Fixed(d) => d as i64,
            Dim::Dynamic => -1,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Dynamic => f.write_str("?"),
        }
    }
}

/// A model input or output: its name, element type and per-row shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    /// Dimensions after the batch dimension.
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// A spec whose dimensions are all fixed.
    pub fn fixed(name: impl Into<String>, dtype: DType, shape: &[usize]) -> Self {
        Self::new(name, dtype, shape.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// Whether any dimension is dynamic (requests of one batch may then differ in shape).
    pub fn is_dynamic(&self) -> bool {
        self.shape.contains(&Dim::Dynamic)
    }

    /// Values per row when every dimension is fixed.
    pub fn fixed_len(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, d| match d {
            Dim::Fixed(d) => acc.checked_mul(*d),
            Dim::Dynamic => None,
        })
    }

    /// Whether a request tensor of `shape` fits (rank and every fixed dimension).
    pub fn accepts(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len() && self.shape.iter().zip(shape).all(|(d, &s)| d.accepts(s))
    }
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}[batch", self.name, self.dtype)?;
        for d in &self.shape {
            write!(f, ", {d}")?;
        }
        f.write_str("]")
    }
}
