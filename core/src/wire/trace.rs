//! W3C Trace Context (`traceparent`) for requests: kbatch joins the caller's trace as one span
//! per request, so the reply carries the same trace id with kbatch's span as its parent, and
//! the batch that ran the request logs the (trace, span) pairs it served (the link from the
//! batch span to its request spans).
//!
//! Invariant: only a well-formed version-00 header (lower-case hex, non-zero ids) is honoured;
//! anything else is ignored as the specification requires, and no header is invented for a
//! request that carried none.

use std::fmt;

/// One request's place in its caller's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span (the request record's producer).
    pub parent_id: [u8; 8],
    /// kbatch's span for this request: the parent of whatever reads the reply.
    pub span_id: [u8; 8],
    pub flags: u8,
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceContext {
    /// Joins the trace of `header` with a fresh span id; `None` for an absent or invalid header.
    pub fn join(header: Option<&[u8]>) -> Option<Self> {
        let text = std::str::from_utf8(header?).ok()?.trim();
        let mut parts = text.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; "ff" is forbidden.
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let mut ctx = TraceContext {
            trace_id: [0; 16],
            parent_id: [0; 8],
            span_id: rand::random(),
            flags: 0,
        };
        hex_into(trace, &mut ctx.trace_id)?;
        hex_into(parent, &mut ctx.parent_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        ctx.flags = f[0];
        if ctx.trace_id == [0; 16] || ctx.parent_id == [0; 8] {
            return None;
        }
        while ctx.span_id == [0; 8] {
            ctx.span_id = rand::random();
        }
        Some(ctx)
    }

    /// The `traceparent` for the reply: same trace and flags, kbatch's span as the parent.
    pub fn reply_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// `trace_id:span_id` as the batch span logs its links.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", hex(&self.trace_id), hex(&self.span_id))
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
