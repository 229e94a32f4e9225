//! Unit tests of `tier`.

use super::*;

#[test]
fn a_request_can_lower_but_never_raise_its_tier() {
    assert_eq!(Tier::High.demoted_to(Some(Tier::Low)), Tier::Low);
    assert_eq!(Tier::High.demoted_to(Some(Tier::Critical)), Tier::High);
    assert_eq!(Tier::Normal.demoted_to(None), Tier::Normal);
    assert_eq!(Tier::Low.demoted_to(Some(Tier::Critical)), Tier::Low);
}

#[test]
fn index_round_trips_and_matches_avro_symbol_order() {
    for (i, t) in Tier::ALL.iter().enumerate() {
        assert_eq!(t.index(), i);
        assert_eq!(Tier::from_index(i), Some(*t));
    }
    assert_eq!(Tier::from_index(4), None);
}
