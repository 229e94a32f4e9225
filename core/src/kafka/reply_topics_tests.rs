use super::*;

fn config(allow: bool, patterns: &[&str], max: usize) -> Config {
    let mut cfg = Config::default();
    cfg.replies.allow_request_reply_topic = allow;
    cfg.replies.allowed_reply_topics = patterns.iter().map(|p| p.to_string()).collect();
    cfg.replies.max_reply_topics = max;
    cfg
}

#[test]
fn kafka_topic_names_follow_kafkas_rules() {
    assert_eq!(topic_name_error("replies.team-a_1"), None);
    assert_eq!(topic_name_error(&"a".repeat(249)), None);
    assert!(topic_name_error("").is_some());
    assert!(topic_name_error(&"a".repeat(250)).is_some());
    assert!(topic_name_error(".").is_some());
    assert!(topic_name_error("..").is_some());
    assert!(topic_name_error("bad\0topic").is_some());
    assert!(topic_name_error("with space").is_some());
    assert!(topic_name_error("ü").is_some());
}

#[test]
fn globs_match_any_run_of_characters_at_each_star() {
    assert!(glob_matches("replies.*", "replies.a"));
    assert!(glob_matches("replies.*", "replies."));
    assert!(!glob_matches("replies.*", "reply.a"));
    assert!(glob_matches("*.replies", "team.replies"));
    assert!(glob_matches("team-*.replies.*", "team-a.replies.x"));
    assert!(!glob_matches("team-*.replies.*", "team-a.other.x"));
    assert!(glob_matches("exact", "exact"));
    assert!(!glob_matches("exact", "exact2"));
    assert!(glob_matches("*", "anything"));
    // The suffix must not overlap what the middle parts used.
    assert!(!glob_matches("a*ba*ab", "abab"));
}

#[test]
fn the_default_topic_answers_requests_naming_none_reserved_ones_or_when_not_allowed() {
    let cfg = config(true, &[], 10);
    let mut topics = ReplyTopics::new(&cfg);
    let default = cfg.replies.default_topic.clone();
    assert_eq!(topics.resolve(None).unwrap(), default);
    assert_eq!(topics.resolve(Some("")).unwrap(), default);
    assert_eq!(
        topics
            .resolve(Some(&cfg.replies.dead_letter_topic))
            .unwrap(),
        default
    );
    assert_eq!(
        topics
            .resolve(Some(cfg.kafka.topics.topic(Tier::Low)))
            .unwrap(),
        default
    );
    let mut closed = ReplyTopics::new(&config(false, &[], 10));
    assert_eq!(closed.resolve(Some("bad\0name")).unwrap(), default);
    assert_eq!(topics.distinct(), 0);
}

#[test]
fn malformed_names_are_invalid_input() {
    let mut topics = ReplyTopics::new(&config(true, &[], 10));
    let refusal = topics.resolve(Some("bad\0topic")).unwrap_err();
    assert_eq!(refusal.status(), Status::InvalidInput);
    assert!(
        refusal.to_string().contains("not a Kafka topic name"),
        "{refusal}"
    );
}

#[test]
fn names_outside_the_allow_list_are_rejected() {
    let mut topics = ReplyTopics::new(&config(true, &["replies.*"], 10));
    assert_eq!(topics.resolve(Some("replies.a")).unwrap(), "replies.a");
    let refusal = topics.resolve(Some("other")).unwrap_err();
    assert_eq!(refusal.status(), Status::Rejected);
    assert!(refusal.to_string().contains("replies.*"), "{refusal}");
}

#[test]
fn distinct_names_are_capped_and_known_ones_stay_allowed() {
    let mut topics = ReplyTopics::new(&config(true, &[], 2));
    assert!(topics.resolve(Some("r1")).is_ok());
    assert!(topics.resolve(Some("r2")).is_ok());
    let refusal = topics.resolve(Some("r3")).unwrap_err();
    assert_eq!(refusal.status(), Status::Rejected);
    assert!(
        refusal.to_string().contains("max_reply_topics (2)"),
        "{refusal}"
    );
    // Names already in use keep working; the cap only stops new ones.
    assert_eq!(topics.resolve(Some("r1")).unwrap(), "r1");
    assert_eq!(topics.distinct(), 2);
}
