//! Unit tests of `tansu`.

use super::*;

#[tokio::test]
async fn a_missing_binary_is_a_clear_error() {
    let err = TansuProcess::start(Path::new("/nonexistent/tansu"))
        .await
        .err()
        .expect("a missing binary cannot start");
    assert!(err.to_string().contains("/nonexistent/tansu"), "{err}");
}
