//! Demo (in progress).
