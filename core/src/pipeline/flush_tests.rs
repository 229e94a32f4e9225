//! Unit tests of `flush`.

use super::*;

#[test]
fn reasons_index_their_own_counter_and_name_their_label() {
    let mut counts = FlushCounts::default();
    counts.add(FlushReason::Wait);
    counts.add(FlushReason::Wait);
    counts.add(FlushReason::Drain);
    assert_eq!(counts.get(FlushReason::Wait), 2);
    assert_eq!(counts.get(FlushReason::Full), 0);
    let labels: Vec<(&str, u64)> = counts.iter().map(|(r, n)| (r.as_str(), n)).collect();
    assert_eq!(
        labels,
        [("full", 0), ("wait", 2), ("timeout", 0), ("drain", 1)]
    );
}
