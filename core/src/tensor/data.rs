//! Element types and typed tensor values.
//!
//! Invariant: byte conversions are little-endian whatever the host, and `from_le_bytes` is only
//! handed whole elements (the wire layer rejects a byte count that is not a multiple of the
//! element size before calling it).

use serde::{Deserialize, Serialize};

/// The element types requests and replies may carry. The discriminant is the Avro enum index of
/// `io.kbatch.v2.DType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DType {
    #[serde(alias = "float32")]
    Float32 = 0,
    #[serde(alias = "float64")]
    Float64 = 1,
    #[serde(alias = "int32")]
    Int32 = 2,
    #[serde(alias = "int64")]
    Int64 = 3,
}

impl DType {
    /// All element types, in Avro enum order.
    pub const ALL: [DType; 4] = [DType::Float32, DType::Float64, DType::Int32, DType::Int64];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float32 | DType::Int32 => 4,
            DType::Float64 | DType::Int64 => 8,
        }
    }

    /// Lower-case name, as ONNX and numpy spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float64 => "float64",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Values of one element type, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// Applies `$body` to the inner vector whatever its element type.
macro_rules! each {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
        }
    };
}

/// Applies `$body` to the inner vector and wraps the result back in the same variant.
macro_rules! map {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
        }
    };
}

impl Default for TensorData {
    fn default() -> Self {
        TensorData::F32(Vec::new())
    }
}

impl TensorData {
    /// No values, of `dtype`.
    pub fn empty(dtype: DType) -> Self {
        Self::zeros(dtype, 0)
    }

    /// `len` zeros of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> Self {
        match dtype {
            DType::Float32 => TensorData::F32(vec![0.0; len]),
            DType::Float64 => TensorData::F64(vec![0.0; len]),
            DType::Int32 => TensorData::I32(vec![0; len]),
            DType::Int64 => TensorData::I64(vec![0; len]),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::Float32,
            TensorData::F64(_) => DType::Float64,
            TensorData::I32(_) => DType::Int32,
            TensorData::I64(_) => DType::Int64,
        }
    }

    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    /// Values the buffer holds room for.
    pub fn capacity(&self) -> usize {
        each!(self, v => v.capacity())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the buffer for values of `dtype`, keeping its capacity when the type is the same
    /// (a worker reuses one buffer per model input across batches).
    pub fn clear_as(&mut self, dtype: DType) {
        if self.dtype() == dtype {
            each!(self, v => v.clear());
        } else {
            *self = Self::empty(dtype);
        }
    }

    /// Appends `other`'s values; `false` (and nothing appended) when its type differs.
    pub fn extend_from(&mut self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
            (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
            _ => return false,
        }
        true
    }

    /// A copy of the values in `range` (`None` when it is out of bounds).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<TensorData> {
        Some(map!(self, v => v.get(range)?.to_vec()))
    }

    /// Values of `dtype` read from little-endian bytes; a trailing partial element is ignored
    /// (callers check the length first).
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Self {
        // Whole arrays and a conversion known at compile time (a generic, not a `fn` pointer):
        // the loop then compiles to a plain copy on little-endian hosts; a call through a
        // pointer per value made it 5x slower than version 1's float decoding.
        fn read<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            let (whole, _partial) = bytes.as_chunks::<N>();
            whole.iter().map(|&c| f(c)).collect()
        }
        match dtype {
            DType::Float32 => TensorData::F32(read(bytes, f32::from_le_bytes)),
            DType::Float64 => TensorData::F64(read(bytes, f64::from_le_bytes)),
            DType::Int32 => TensorData::I32(read(bytes, i32::from_le_bytes)),
            DType::Int64 => TensorData::I64(read(bytes, i64::from_le_bytes)),
        }
    }

    /// The values as float32: moved when they are float32 already, else converted (rounding
    /// large integers and float64 values), for the version-1 contract that carries only float32.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            TensorData::F32(v) => v,
            TensorData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
            TensorData::I32(v) => v.into_iter().map(|x| x as f32).collect(),
            TensorData::I64(v) => v.into_iter().map(|x| x as f32).collect(),
        }
    }

    /// JSON numbers as values of `dtype`: floats accept any number, integers only whole numbers
    /// in range (int64 values keep every bit: they never pass through a float).
    pub fn from_json_numbers(
        dtype: DType,
        numbers: Vec<serde_json::Number>,
    ) -> Result<TensorData, String> {
        Numbers::Parsed(numbers).into_data(dtype)
    }

    /// Size of the values as bytes.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }

    /// Appends the values as little-endian bytes to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.byte_len());
        each!(self, v => {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        })
    }

    /// Hands the little-endian bytes of the values to `f` in pieces of at most 4 KiB, from a
    /// stack buffer: hashing a tensor allocates nothing.
    pub fn for_each_le_chunk(&self, mut f: impl FnMut(&[u8])) {
        match self {
            TensorData::F32(v) => le_chunks(v, f32::to_le_bytes, &mut f),
            TensorData::F64(v) => le_chunks(v, f64::to_le_bytes, &mut f),
            TensorData::I32(v) => le_chunks(v, i32::to_le_bytes, &mut f),
            TensorData::I64(v) => le_chunks(v, i64::to_le_bytes, &mut f),
        }
    }

    /// The first value that is NaN or infinite, with its index (integers never are).
    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        // Without an early exit the check vectorizes; the position is looked up only on failure.
        match self {
            TensorData::F32(v) if !v.iter().fold(true, |ok, x| ok & x.is_finite()) => v
                .iter()
                .position(|x| !x.is_finite())
                .map(|i| (i, f64::from(v[i]))),
            TensorData::F64(v) if !v.iter().fold(true, |ok, x| ok & x.is_finite()) => {
                v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i]))
            }
            _ => None,
        }
    }
}

/// `values` as little-endian bytes, 4 KiB at a time through a stack buffer.
fn le_chunks<T: Copy, const N: usize>(
    values: &[T],
    le: impl Fn(T) -> [u8; N],
    f: &mut impl FnMut(&[u8]),
) {
    const CHUNK: usize = 4096;
    let mut buf = [0u8; CHUNK];
    for items in values.chunks(CHUNK / N) {
        let bytes = &mut buf[..items.len() * N];
        for (dst, &x) in bytes.chunks_exact_mut(N).zip(items) {
            dst.copy_from_slice(&le(x));
        }
        f(bytes);
    }
}

/// JSON numbers of a tensor: read as written (integers stay exact) and typed by the tensor's
/// `dtype`; written from typed values.
pub(super) enum Numbers {
    Parsed(Vec<serde_json::Number>),
    Typed(TensorData),
}

impl Numbers {
    /// The values as `dtype`: floats accept any number, integers only whole numbers in range.
    pub(super) fn into_data(self, dtype: DType) -> Result<TensorData, String> {
        let parsed = match self {
            Numbers::Typed(d) if d.dtype() == dtype => return Ok(d),
            Numbers::Typed(d) => return Err(format!("values are {}, not {dtype}", d.dtype())),
            Numbers::Parsed(p) => p,
        };
        let float = |n: &serde_json::Number| n.as_f64().unwrap_or(f64::NAN);
        let int = |i: usize, n: &serde_json::Number| {
            n.as_i64()
                .ok_or_else(|| format!("value {i} ({n}) is not a {dtype}"))
        };
        Ok(match dtype {
            DType::Float32 => TensorData::F32(parsed.iter().map(|n| float(n) as f32).collect()),
            DType::Float64 => TensorData::F64(parsed.iter().map(float).collect()),
            DType::Int64 => TensorData::I64(
                parsed
                    .iter()
                    .enumerate()
                    .map(|(i, n)| int(i, n))
                    .collect::<Result<_, _>>()?,
            ),
            DType::Int32 => TensorData::I32(
                parsed
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        int(i, n).and_then(|v| {
                            i32::try_from(v).map_err(|_| format!("value {i} ({v}) is not an int32"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

impl From<TensorData> for Numbers {
    fn from(d: TensorData) -> Self {
        Numbers::Typed(d)
    }
}

impl Serialize for Numbers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Numbers::Parsed(p) => p.serialize(s),
            Numbers::Typed(d) => each!(d, v => v.serialize(s)),
        }
    }
}

impl<'de> Deserialize<'de> for Numbers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<serde_json::Number>::deserialize(d).map(Numbers::Parsed)
    }
}
