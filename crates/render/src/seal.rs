//! A rollout's route seal: the secret the filter stamps after the version (`v2;<seal>`) and
//! the managed routes match, so that only requests the filter stamped reach a version's route
//! and a failing filter sends everyone to stable (see the filter's `seal` setting).
//!
//! Derived from the rollout object's uid, which the API server assigns at random (122 bits)
//! and never changes, so every renderer of the rollout finds the same seal without storing
//! one, and a rollout deleted and created again gets a new one. Who can read the rollout or
//! its VirtualService can learn it; a client outside the cluster cannot.

use sticky_canary_filter::guard;

/// Hex digits of a seal: 128 bits.
const LEN: usize = 32;

/// The seal of the rollout whose `metadata.uid` is `uid`.
pub fn of_uid(uid: &str) -> String {
    let mut hex = guard::to_hex(&guard::digest(b"sticky-canary route seal", uid.as_bytes()));
    hex.truncate(LEN);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_is_fixed_per_uid_and_valid_for_the_filter() {
        let a = of_uid("6f1c2a9e-1d3b-4c5d-8e7f-0a1b2c3d4e5f");
        assert_eq!(a, of_uid("6f1c2a9e-1d3b-4c5d-8e7f-0a1b2c3d4e5f"));
        assert_ne!(a, of_uid("6f1c2a9e-1d3b-4c5d-8e7f-0a1b2c3d4e60"));
        assert_eq!(a.len(), LEN);
        assert!(sticky_canary_filter::names::check_seal(&a).is_ok());
    }
}
