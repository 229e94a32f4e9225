//! Where a request's reply may go: its own `reply_topic` when the configuration allows it and
//! the name is a Kafka topic name, else the default reply topic; and how many distinct names one
//! instance writes to.
//!
//! Invariant: the set of reply topics the replier is ever handed is bounded by
//! `replies.max_reply_topics` plus the default topic, whatever the requests name. Each topic a
//! producer writes to costs librdkafka a topic object and metadata that live as long as the
//! producer, so names chosen by requesters must not grow it without limit. A refused name is
//! answered with an error reply on the default topic, never dropped.
//!
//! Pure state, owned by the consumer thread's admission.

use std::collections::HashSet;

use crate::config::Config;
use crate::tier::Tier;
use crate::wire::Status;

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_NAME: usize = 249;

/// Why a request's own reply topic is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyTopicRefusal {
    #[error("reply_topic {name:?} is not a Kafka topic name: {why}")]
    Invalid { name: String, why: &'static str },
    #[error("reply_topic {name:?} matches none of replies.allowed_reply_topics ({patterns})")]
    NotAllowed { name: String, patterns: String },
    #[error(
        "this instance already writes to replies.max_reply_topics ({limit}) request-named \
         reply topics; reply_topic {name:?} would be one more"
    )]
    TooMany { name: String, limit: usize },
}

impl ReplyTopicRefusal {
    /// The status of the error reply: a malformed name is the request's content, the others are
    /// the operator's policy.
    pub fn status(&self) -> Status {
        match self {
            Self::Invalid { .. } => Status::InvalidInput,
            Self::NotAllowed { .. } | Self::TooMany { .. } => Status::Rejected,
        }
    }
}

/// Why `name` is not a Kafka topic name, if it is not: 1 to 249 characters of ASCII letters,
/// digits, `.`, `_` and `-`, and neither `.` nor `..`.
pub fn topic_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME {
        return Some("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Some("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    None
}

/// Whether `name` matches the glob `pattern`, where `*` stands for any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The reply-topic rules of `replies.*` and the request-named topics admitted so far.
#[derive(Debug, Clone)]
pub struct ReplyTopics {
    default_topic: String,
    allow_request_reply_topic: bool,
    /// The four request topics and the dead-letter topic: a reply written there would be read
    /// back as a request or pollute the dead-letter topic, so such a name falls back to the
    /// default topic.
    reserved: Vec<String>,
    patterns: Vec<String>,
    max: usize,
    seen: HashSet<String>,
}

impl ReplyTopics {
    pub fn new(cfg: &Config) -> Self {
        let mut reserved: Vec<String> = Tier::ALL
            .iter()
            .map(|&t| cfg.kafka.topics.topic(t).to_owned())
            .collect();
        reserved.push(cfg.replies.dead_letter_topic.clone());
        Self {
            default_topic: cfg.replies.default_topic.clone(),
            allow_request_reply_topic: cfg.replies.allow_request_reply_topic,
            reserved,
            patterns: cfg.replies.allowed_reply_topics.clone(),
            max: cfg.replies.max_reply_topics,
            seen: HashSet::new(),
        }
    }

    pub fn default_topic(&self) -> &str {
        &self.default_topic
    }

    /// The topic a request naming `requested` is answered on, or why its name is refused (then
    /// the error reply goes to the default topic).
    pub fn resolve(&mut self, requested: Option<&str>) -> Result<String, ReplyTopicRefusal> {
        let name = match requested {
            Some(t) if self.allow_request_reply_topic && !t.is_empty() => t,
            _ => return Ok(self.default_topic.clone()),
        };
        if name == self.default_topic || self.reserved.iter().any(|r| r == name) {
            return Ok(self.default_topic.clone());
        }
        if let Some(why) = topic_name_error(name) {
            return Err(ReplyTopicRefusal::Invalid {
                name: name.to_owned(),
                why,
            });
        }
        if !self.patterns.is_empty() && !self.patterns.iter().any(|p| glob_matches(p, name)) {
            return Err(ReplyTopicRefusal::NotAllowed {
                name: name.to_owned(),
                patterns: self.patterns.join(", "),
            });
        }
        if !self.seen.contains(name) {
            if self.seen.len() >= self.max {
                return Err(ReplyTopicRefusal::TooMany {
                    name: name.to_owned(),
                    limit: self.max,
                });
            }
            self.seen.insert(name.to_owned());
        }
        Ok(name.to_owned())
    }

    /// Request-named reply topics admitted so far.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
#[path = "reply_topics_tests.rs"]
mod tests;
