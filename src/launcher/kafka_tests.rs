//! Unit tests of `kafka`.

use super::*;

#[test]
fn a_folder_without_the_broker_jar_is_not_an_installation() {
    let dir = std::env::temp_dir().join(format!("kbatch-home-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("libs")).unwrap();
    std::fs::write(dir.join("libs/kafka-clients-4.1.1.jar"), b"").unwrap();
    let err = KafkaHome::at(&dir).unwrap_err();
    assert!(err.to_string().contains("install-kafka.sh"), "{err}");
    std::fs::write(dir.join("libs/kafka_2.13-4.1.1.jar"), b"").unwrap();
    assert_eq!(KafkaHome::at(&dir).unwrap().version(), "4.1.1");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn caller_properties_come_last_and_so_win() {
    let opts = KafkaOptions {
        properties: vec![("num.io.threads".into(), "4".into())],
        ..KafkaOptions::default()
    };
    let text = server_properties(Path::new("/tmp/x"), 9092, 9093, &opts);
    let io: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("num.io.threads="))
        .collect();
    assert_eq!(io, ["num.io.threads=2", "num.io.threads=4"]);
    assert!(text.contains("advertised.listeners=PLAINTEXT://127.0.0.1:9092\n"));
    assert!(text.contains("controller.quorum.voters=1@127.0.0.1:9093\n"));
}
