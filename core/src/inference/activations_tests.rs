use super::per_row;

#[test]
fn growth_is_shared_by_the_rows_added() {
    assert_eq!(per_row(1_000, 33_000, 32, 64), Some(1_000));
    assert_eq!(
        per_row(1_000, 1_000, 32, 64),
        Some(0),
        "no growth: nothing per row"
    );
    assert_eq!(per_row(0, 10, 0, 3), Some(4), "rounded up");
    assert_eq!(per_row(0, 10, 64, 64), None, "no row added");
}
