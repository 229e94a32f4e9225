//! Unit tests of `error`.

use super::*;

#[test]
fn library_not_found_lists_every_searched_path() {
    let err = InferenceError::LibraryNotFound {
        searched: vec![PathBuf::from("/a/libonnxruntime.so"), PathBuf::from("b")],
    };
    let text = err.to_string();
    assert!(text.contains("/a/libonnxruntime.so, b"), "{text}");
}

#[test]
fn errors_clone_for_fan_out() {
    let err = InferenceError::Run("boom".into());
    let copies: Vec<_> = std::iter::repeat_n(&err, 3).cloned().collect();
    assert!(copies.iter().all(|e| *e == err));
}
