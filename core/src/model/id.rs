//! The identity of a served model, as every reply names it.

use std::fmt;

/// A model's name (what requests refer to) and version (reported in replies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelId {
    pub name: String,
    pub version: String,
}

impl ModelId {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}
