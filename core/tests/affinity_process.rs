//! Pinning the whole process changes every thread's mask, so this test has a process of its own:
//! among the library's unit tests it would pin their threads too while it runs.

use kbatch_core::affinity::{allowed_cores, pin_process};

#[test]
fn pinning_the_process_moves_existing_threads_and_their_children_inherit() {
    let allowed = allowed_cores().unwrap();
    let last = *allowed.last().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread that exists before the call, and one it creates after.
    let existing = std::thread::spawn(move || {
        wait.recv().unwrap();
        let mine = allowed_cores().unwrap();
        let child = std::thread::spawn(|| allowed_cores().unwrap())
            .join()
            .unwrap();
        tx.send((mine, child)).unwrap();
    });
    let pinned = pin_process(&[last]);
    go.send(()).unwrap();
    let (mine, child) = rx.recv().unwrap();
    existing.join().unwrap();
    // Give every thread its mask back before asserting, so a failure leaves the process as it was.
    pin_process(&allowed).unwrap();
    assert!(
        pinned.unwrap() >= 2,
        "this thread and the spawned one at least"
    );
    assert_eq!((mine, child), (vec![last], vec![last]));
}
