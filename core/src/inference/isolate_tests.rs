//! Unit tests of poison isolation with a stand-in model: deterministic poison, transient
//! failures, panics, and the bound on model calls.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

const OUT: usize = 3;

fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        retry_delay: Duration::from_millis(50),
    }
}

/// Row `i`'s output: `[i; OUT]`.
fn rows_of(rows: &[usize]) -> Vec<Vec<f32>> {
    rows.iter().map(|&r| vec![r as f32; OUT]).collect()
}

/// A model that fails any group holding a poisoned row; row `i`'s output is `[i; OUT]`.
fn poisoned(
    poison: HashSet<usize>,
) -> impl FnMut(&[usize]) -> Result<Vec<Vec<f32>>, InferenceError> {
    move |rows| {
        if rows.iter().any(|r| poison.contains(r)) {
            return Err(InferenceError::Run("poison".into()));
        }
        Ok(rows_of(rows))
    }
}

#[test]
fn one_poisoned_request_fails_alone_after_its_retries() {
    let mut run = poisoned([13].into());
    let mut slept = Vec::new();
    let iso = isolate(
        32,
        policy(2),
        InferenceError::Run("batch".into()),
        &mut run,
        &mut |d| slept.push(d),
    );
    for (i, r) in iso.rows.iter().enumerate() {
        match r {
            Ok(row) => assert_eq!(row, &vec![i as f32; OUT], "row {i} is its own"),
            Err(e) => {
                assert_eq!(i, 13, "only the poison fails");
                assert_eq!(e, &InferenceError::Run("poison".into()));
            }
        }
    }
    assert!(iso.rows[13].is_err());
    // Only the isolated request waits between its attempts.
    assert_eq!(slept, vec![Duration::from_millis(50); 2]);
    // Halving 32 down to the poison: 2 calls per level over 5 levels, then 2 retries.
    assert_eq!(iso.calls, 2 * 5 + 2);
}

#[test]
fn a_transient_failure_heals_without_failing_anyone() {
    let mut failures = 2;
    let mut run = move |rows: &[usize]| {
        if failures > 0 {
            failures -= 1;
            return Err(InferenceError::Run("device busy".into()));
        }
        Ok(rows_of(rows))
    };
    let iso = isolate(
        4,
        policy(1),
        InferenceError::Run("busy".into()),
        &mut run,
        &mut |_| {},
    );
    assert!(iso.rows.iter().all(Result::is_ok), "{:?}", iso.rows);
}

#[test]
fn a_panicking_model_is_a_failure_not_a_dead_thread() {
    let mut run = |rows: &[usize]| -> Result<Vec<Vec<f32>>, InferenceError> {
        if rows.contains(&1) {
            panic!("segment overflow in row {}", rows[0]);
        }
        Ok(rows_of(rows))
    };
    let err = guarded(&mut run, &[0, 1]).unwrap_err();
    assert!(
        err.to_string()
            .contains("the model panicked: segment overflow"),
        "{err}"
    );
    let iso = isolate(2, policy(0), err, &mut run, &mut |_| {});
    assert!(iso.rows[0].is_ok());
    assert!(iso.rows[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("panicked"));
}

#[test]
fn without_retries_a_lone_request_fails_at_once() {
    let mut run = poisoned([0].into());
    let mut slept = 0;
    let iso = isolate(
        1,
        policy(0),
        InferenceError::Run("x".into()),
        &mut run,
        &mut |_| slept += 1,
    );
    assert!(iso.rows[0].is_err());
    assert_eq!((iso.calls, slept), (0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_request_gets_one_result_and_calls_stay_bounded(
        n in 1usize..48,
        poison in proptest::collection::hash_set(0usize..48, 0..6),
        retries in 0u32..3,
    ) {
        let poison: HashSet<usize> = poison.into_iter().filter(|&p| p < n).collect();
        let mut run = poisoned(poison.clone());
        let iso = isolate(n, policy(retries), InferenceError::Run("b".into()), &mut run, &mut |_| {});
        prop_assert_eq!(iso.rows.len(), n);
        // A lone request whose only call failed has no second chance without retries.
        let lone_without_retry = n == 1 && retries == 0;
        for (i, r) in iso.rows.iter().enumerate() {
            prop_assert_eq!(r.is_err(), poison.contains(&i) || lone_without_retry, "row {}", i);
        }
        let bound = 2 * n as u32 - 1 + n as u32 * retries;
        prop_assert!(iso.calls <= bound, "{} calls > {}", iso.calls, bound);
    }
}

#[test]
fn a_result_count_that_does_not_match_the_rows_is_a_failure() {
    let mut short = |rows: &[usize]| Ok(rows_of(&rows[1..]));
    let err = guarded(&mut short, &[0, 1, 2]).unwrap_err();
    assert_eq!(
        err,
        InferenceError::OutputShape("2 results for 3 rows".into())
    );
}
