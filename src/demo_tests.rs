//! Unit tests of `demo`.

use super::*;

#[tokio::test]
async fn mock_broker_serves_metadata_for_its_topics_and_stops() {
    let topics = vec!["demo.a".to_owned(), "demo.b".to_owned()];
    let mock = MockBroker::start(topics.clone(), 2).unwrap();
    // The topics exist already: this only checks metadata (the mock has no CreateTopics).
    ensure_named_topics(mock.bootstrap(), &[], &topics, 2)
        .await
        .unwrap();
    mock.stop();
}

fn report() -> DemoReport {
    let mut pipeline = ServeReport {
        consumer: Default::default(),
        batcher: Default::default(),
        workers: vec![Default::default()],
        replier: Default::default(),
    };
    pipeline.consumer.consumed = 100;
    pipeline.replier.replies[kbatch_core::wire::Status::Ok as usize] = 90;
    DemoReport {
        broker: BrokerSummary {
            kind: BrokerKind::Kafka,
            version: Some("4.1.1".into()),
            bootstrap: "127.0.0.1:9092".into(),
            started_in_s: Some(5.5),
        },
        model: "cnn_lstm".into(),
        load: BenchReport::sample(),
        pipeline,
    }
}

#[test]
fn json_holds_the_broker_the_load_and_the_pipeline() {
    let json = serde_json::to_value(report()).unwrap();
    assert_eq!(json["broker"]["kind"], "kafka");
    assert_eq!(json["broker"]["version"], "4.1.1");
    assert_eq!(json["model"], "cnn_lstm");
    assert_eq!(json["load"]["answered"], 90);
    assert_eq!(json["load"]["statuses"]["OK"], 90);
    assert_eq!(json["pipeline"]["intake"]["consumed"], 100);
    assert_eq!(json["pipeline"]["replies"]["by_status"]["OK"], 90);
}

#[test]
fn table_has_the_three_parts_with_labelled_figures() {
    let text = report().table().render();
    for title in [
        "kbatch demo",
        "load, as the client saw it",
        "pipeline, as the server counted it",
    ] {
        assert!(text.lines().any(|l| l == title), "{title}: {text}");
    }
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("{start}: {text}"))
            .to_owned()
    };
    assert!(line("broker ").ends_with("Apache Kafka 4.1.1 at 127.0.0.1:9092 (child process)"));
    assert!(line("broker start-up").ends_with("5.5 s"));
    assert!(line("  consumed").ends_with(" 100"), "{text}");
    assert!(line("  answered").ends_with(" 90"), "{text}");
    let load = text.find("load, as").unwrap();
    let pipeline = text.find("pipeline, as").unwrap();
    assert!(load < pipeline, "the load first: {text}");
}
