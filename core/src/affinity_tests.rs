use super::*;

#[test]
fn inference_gets_its_threads_cores_and_io_keeps_at_least_one() {
    let plan = CorePlan::split(&[0, 1, 2, 3], 2).unwrap();
    assert_eq!((plan.inference, plan.io), (vec![0, 1], vec![2, 3]));
    // More inference threads than cores: one core still stays for I/O.
    let plan = CorePlan::split(&[0, 1, 2, 3], 8).unwrap();
    assert_eq!((plan.inference, plan.io), (vec![0, 1, 2], vec![3]));
    // A cpuset's ids, not 0..n.
    let plan = CorePlan::split(&[4, 6], 1).unwrap();
    assert_eq!((plan.inference, plan.io), (vec![4], vec![6]));
    assert_eq!(CorePlan::split(&[3], 1), Err(AffinityError::TooFewCores(1)));
}

#[test]
fn ort_gets_one_entry_per_thread_it_creates_in_one_based_ids() {
    let plan = CorePlan::split(&[0, 1, 2, 3, 4], 3).unwrap();
    assert_eq!(
        plan.ort_intra_op_affinities(1),
        None,
        "ORT creates no thread"
    );
    assert_eq!(plan.ort_intra_op_affinities(2).as_deref(), Some("1,2,3"));
    assert_eq!(
        plan.ort_intra_op_affinities(3).as_deref(),
        Some("1,2,3;1,2,3")
    );
}

#[test]
fn a_pinned_thread_runs_only_on_its_cores() {
    let allowed = allowed_cores().unwrap();
    assert!(!allowed.is_empty());
    let last = *allowed.last().unwrap();
    let seen = std::thread::spawn(move || {
        pin_current_thread(&[last]).unwrap();
        allowed_cores().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(seen, [last]);
    assert_eq!(
        allowed_cores().unwrap(),
        allowed,
        "other threads keep theirs"
    );
}
