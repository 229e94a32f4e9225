//! Avro binary primitives over byte slices: zig-zag varints, strings, unions, blocked arrays.
//!
//! Invariant: the reader never trusts a length from the input. Every count is checked against
//! the bytes that remain (and the caller's limit) before anything is reserved, so a hostile
//! record cannot make us allocate more than a small multiple of its own size.

use super::error::WireError;

/// A cursor over one Avro datum.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated { field });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A zig-zag varint `long` (at most 10 bytes).
    pub fn long(&mut self, field: &'static str) -> Result<i64, WireError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated { field });
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(malformed(field, "varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(malformed(field, "varint longer than 10 bytes"))
    }

    /// A zig-zag varint `int`, range-checked.
    pub fn int(&mut self, field: &'static str) -> Result<i32, WireError> {
        let v = self.long(field)?;
        i32::try_from(v).map_err(|_| malformed(field, "int out of range"))
    }

    /// A non-negative length prefix bounded by `limit`.
    fn len(&mut self, field: &'static str, limit: usize) -> Result<usize, WireError> {
        let n = self.long(field)?;
        let n = usize::try_from(n).map_err(|_| malformed(field, "negative length"))?;
        if n > limit {
            return Err(WireError::TooLarge {
                what: field,
                size: n,
                limit,
            });
        }
        Ok(n)
    }

    pub fn bytes(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], WireError> {
        let n = self.len(field, limit)?;
        self.take(n, field)
    }

    pub fn string(&mut self, field: &'static str, limit: usize) -> Result<String, WireError> {
        let raw = self.bytes(field, limit)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| malformed(field, "invalid UTF-8"))
    }

    /// The branch index of a `["null", T]` union: false for null, true for T.
    pub fn optional(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed(field, "union branch out of range")),
        }
    }

    /// An enum index below `symbols`.
    pub fn enum_index(&mut self, field: &'static str, symbols: usize) -> Result<usize, WireError> {
        let i = self.long(field)?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i < symbols)
            .ok_or_else(|| malformed(field, "enum index out of range"))
    }

    /// Walks the blocks of an array whose items are `item_size` bytes wide (0 = variable), calling
    /// `block` with each block's item count. Returns the total item count.
    pub fn array_blocks(
        &mut self,
        field: &'static str,
        item_size: usize,
        limit: usize,
        mut block: impl FnMut(&mut Self, usize) -> Result<(), WireError>,
    ) -> Result<usize, WireError> {
        let mut total = 0usize;
        loop {
            let count = self.long(field)?;
            if count == 0 {
                return Ok(total);
            }
            // A negative count is followed by the block's size in bytes, which we don't need.
            let count = if count < 0 {
                self.long(field)?;
                count.unsigned_abs()
            } else {
                count as u64
            };
            let count = usize::try_from(count).map_err(|_| malformed(field, "array too long"))?;
            total =
                total
                    .checked_add(count)
                    .filter(|&t| t <= limit)
                    .ok_or(WireError::TooLarge {
                        what: field,
                        size: total.saturating_add(count),
                        limit,
                    })?;
            // Each item takes at least one byte (or item_size), so a count beyond what remains
            // is a lie we can reject before reserving memory for it.
            if count.saturating_mul(item_size.max(1)) > self.remaining() {
                return Err(WireError::Truncated { field });
            }
            block(self, count)?;
        }
    }

    /// An `array<float>` appended to `out`: one reservation per block, none per value.
    pub fn float_array_into(
        &mut self,
        field: &'static str,
        limit: usize,
        out: &mut Vec<f32>,
    ) -> Result<usize, WireError> {
        self.array_blocks(field, 4, limit, |r, count| {
            let raw = r.take(count * 4, field)?;
            out.reserve(count);
            out.extend(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            Ok(())
        })
    }

    /// An `array<int>`.
    pub fn int_array(&mut self, field: &'static str, limit: usize) -> Result<Vec<i32>, WireError> {
        let mut out = Vec::new();
        self.array_blocks(field, 1, limit, |r, count| {
            out.reserve(count);
            for _ in 0..count {
                out.push(r.int(field)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Fails when bytes are left over: a datum that is longer than its schema says is corrupt.
    pub fn finish(self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { count }),
        }
    }
}

fn malformed(field: &'static str, reason: &'static str) -> WireError {
    WireError::Malformed { field, reason }
}

/// Appends Avro binary primitives to a reusable buffer.
pub struct Writer<'a> {
    pub out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.out.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.long(b.len() as i64);
        self.out.extend_from_slice(b);
    }

    pub fn string(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            None => self.long(0),
            Some(s) => {
                self.long(1);
                self.string(s);
            }
        }
    }

    pub fn opt_long(&mut self, v: Option<i64>) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                self.long(v);
            }
        }
    }

    /// An array as a single block (what every standard writer emits for in-memory arrays).
    pub fn int_array(&mut self, items: &[i32]) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for &i in items {
                self.long(i64::from(i));
            }
        }
        self.long(0);
    }

    pub fn float_array(&mut self, items: &[f32]) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            self.out.reserve(items.len() * 4);
            for f in items {
                self.out.extend_from_slice(&f.to_le_bytes());
            }
        }
        self.long(0);
    }
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
