//! The `security` section (API keys of the HTTP endpoint, per-tier client access) and secrets:
//! `file:`/`env:` references resolved when the configuration is loaded, and redaction for
//! anything that prints a configuration.
//!
//! Invariant: a `Config` handed out by `load` holds resolved values, never a reference, and a
//! secret value never reaches a message: resolution errors name the key and the reference,
//! [`Secret`]'s `Debug` prints `***`, and [`redacted`] masks the API keys and every sensitive
//! `kafka.properties` value before a configuration is printed.

use serde::{Deserialize, Serialize};

use super::{Config, Issue};
use crate::tier::Tier;

/// What [`redacted`] and [`Secret`]'s `Debug` show instead of a secret.
pub const REDACTED: &str = "***";

/// Parts of a `kafka.properties` name (lower case) that mark its value as sensitive. Usernames,
/// file locations and certificates are not secrets; passwords, tokens, private keys and
/// client secrets are. A token *endpoint* is masked too: one false positive is cheaper than a
/// leaked credential.
const SENSITIVE_PROPERTY_PARTS: [&str; 9] = [
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "key.pem",
    "private.key",
    "sasl.oauthbearer.config",
    "jaas.config",
];

/// A secret string: serialized as is (the configuration round-trips through serde on reload),
/// never shown by `Debug`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself; keep it out of logs and messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// The `security` configuration section: API keys for the HTTP endpoint, sent in
/// `api_key_header` (`X-API-Key` by default). Restart-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Keys the HTTP endpoint accepts, each a literal or a `file:/path` / `env:VAR` reference.
    /// Empty (default): every path is open. Otherwise `/metrics`, `/ready` and `/stats` answer
    /// 401 unless the request carries one of them in `api_key_header`; `/healthz` stays open.
    pub api_keys: Vec<Secret>,
    /// Request header carrying the API key.
    pub api_key_header: String,
    /// Which clients may use each tier and how fast; the default lets everyone in, unlimited.
    pub tier_access: TierAccessConfig,
    /// Most rate-limit buckets (one per client and limited tier) kept in memory; past it, the
    /// buckets whose loss changes least (idle ones first) are forgotten.
    pub max_tracked_clients: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            api_key_header: "X-API-Key".into(),
            tier_access: TierAccessConfig::default(),
            max_tracked_clients: 10_000,
        }
    }
}

/// `security.tier_access`: the rules of each tier.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierAccessConfig {
    /// Rules of the critical tier.
    pub critical: TierAccess,
    /// Rules of the high tier.
    pub high: TierAccess,
    /// Rules of the normal tier.
    pub normal: TierAccess,
    /// Rules of the low tier.
    pub low: TierAccess,
}

impl TierAccessConfig {
    pub fn tier(&self, tier: Tier) -> &TierAccess {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Normal => &self.normal,
            Tier::Low => &self.low,
        }
    }

    /// Whether any tier has an allow-list or a rate limit.
    pub fn is_restricted(&self) -> bool {
        Tier::ALL.iter().any(|&t| {
            let a = self.tier(t);
            a.allowed_clients.is_some() || a.rate_limit.is_some()
        })
    }
}

/// Who may be served at one tier, and how fast.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierAccess {
    /// The request `client_id`s served at this tier; unset (default): any client, with or
    /// without an id. When set, a request without a `client_id` is not allowed, and an empty
    /// list closes the tier.
    pub allowed_clients: Option<Vec<String>>,
    /// A token bucket per client at this tier; unset (default): unlimited.
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: `burst` requests at once, refilled at `rate_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second per client (> 0).
    pub rate_per_second: f64,
    /// Requests a client may send at once after being idle (>= 1).
    pub burst: u32,
}

/// Whether the librdkafka property `name` holds a secret (see [`SENSITIVE_PROPERTY_PARTS`]).
pub fn is_sensitive_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_PROPERTY_PARTS.iter().any(|p| name.contains(p))
}

/// `c` with the API keys and every sensitive `kafka.properties` value replaced by `***`: the
/// only form in which a configuration may be printed or logged.
pub fn redacted(c: &Config) -> Config {
    let mut out = c.clone();
    for (name, value) in &mut out.kafka.properties {
        if is_sensitive_property(name) {
            *value = REDACTED.into();
        }
    }
    for key in &mut out.security.api_keys {
        *key = Secret::new(REDACTED);
    }
    out
}

/// Replaces every `file:`/`env:` reference among the `kafka.properties` values and the API keys
/// with what it points to; `env` is the environment to read (`LoadOptions::env` or the
/// process's). A reference that cannot be resolved stays as it is and yields an [`Issue`]
/// naming the key and the reference, never a value.
pub fn resolve_secrets(c: &mut Config, env: &[(String, String)]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut resolve = |field: String, value: &mut String| match resolve_reference(value, env) {
        Ok(Some(resolved)) => *value = resolved,
        Ok(None) => {}
        Err(message) => issues.push(Issue {
            field,
            message,
            source: None,
        }),
    };
    for (name, value) in &mut c.kafka.properties {
        resolve(format!("kafka.properties.{name}"), value);
    }
    for (i, key) in c.security.api_keys.iter_mut().enumerate() {
        resolve(format!("security.api_keys[{i}]"), &mut key.0);
    }
    issues
}

/// What a `file:`/`env:` reference points to; `Ok(None)` when `value` is no reference. Files
/// lose their trailing line breaks (`echo secret > file` writes one).
fn resolve_reference(value: &str, env: &[(String, String)]) -> Result<Option<String>, String> {
    let resolved = if let Some(path) = value.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` names no file".into());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret file of `{value}`: {e}"))?;
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(var) = value.strip_prefix("env:") {
        if var.is_empty() {
            return Err("`env:` names no variable".into());
        }
        env.iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("`{value}`: environment variable {var} is not set"))?
    } else {
        return Ok(None);
    };
    if resolved.is_empty() {
        return Err(format!("`{value}` resolves to an empty value"));
    }
    Ok(Some(resolved))
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
