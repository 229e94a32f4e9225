//! Unit tests of `admin`.

use super::*;

#[test]
fn all_topics_lists_the_six_configured_names() {
    let cfg = Config::default();
    let t = all_topics(&cfg);
    assert_eq!(t.len(), 6);
    assert_eq!(t[0], cfg.kafka.topics.critical);
    assert_eq!(t[4], cfg.replies.default_topic);
    assert_eq!(t[5], cfg.replies.dead_letter_topic);
}

#[test]
fn a_created_topic_is_ready_only_with_the_requested_partitions() {
    let s = TopicState {
        partitions: 4,
        all_led: true,
    };
    assert!(s.ready(Some(4)));
    assert!(!s.ready(Some(3)));
    assert!(s.ready(None));
    let unled = TopicState {
        partitions: 4,
        all_led: false,
    };
    assert!(!unled.ready(None));
}
