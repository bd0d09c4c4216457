//! Client ids for clients without a key: 128 bits as 32 hex digits.
//!
//! Ids only spread clients over buckets (the bucket is a hash of the id) and tell one client
//! from another; they guard nothing, since a client holds its own id in a cookie it can
//! rewrite. So they come from the xxh64 the bucketing links in anyway, keyed once per VM with
//! 128 bits of the host's entropy, over a counter: no two ids of a VM repeat, and another
//! VM's ids (another key) cannot be derived from them. `rand`'s ChaCha generator did the same
//! job with 8.8 KB more code in the `.wasm` (measured).

use xxhash_rust::xxh64::xxh64;

/// Makes ids from a key; the shell keys it from the host's entropy.
#[derive(Debug)]
pub struct Ids {
    key: [u64; 2],
    counter: u64,
}

impl Ids {
    /// A generator keyed with these 16 bytes.
    pub fn new(key: [u8; 16]) -> Self {
        let (low, high) = key.split_at(8);
        let word = |bytes: &[u8]| {
            let mut word = [0; 8];
            word.copy_from_slice(bytes);
            u64::from_le_bytes(word)
        };
        Ids {
            key: [word(low), word(high)],
            counter: 0,
        }
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        let counter = self.counter.to_le_bytes();
        let id = u128::from(xxh64(&counter, self.key[0])) << 64
            | u128::from(xxh64(&counter, self.key[1]));
        format!("{id:032x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::{bucket_of, BUCKETS};
    use std::collections::HashSet;

    #[test]
    fn ids_are_distinct_hex_and_differ_by_key() {
        let mut ids = Ids::new([7; 16]);
        let first: Vec<String> = (0..10_000).map(|_| ids.next_id()).collect();
        assert!(first
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), first.len());
        let mut other = Ids::new([8; 16]);
        assert!((0..10_000).all(|_| !first.contains(&other.next_id())));
    }

    /// The ids' buckets are spread evenly: each tenth of the buckets gets 10% ± 1 point of
    /// 100,000 ids (the binomial standard deviation is 0.09 points).
    #[test]
    fn ids_spread_evenly_over_the_buckets() {
        let mut ids = Ids::new(*b"0123456789abcdef");
        let mut tenths = [0u32; 10];
        for _ in 0..100_000 {
            let bucket = bucket_of(0, ids.next_id().as_bytes());
            tenths[usize::from(bucket / (BUCKETS / 10))] += 1;
        }
        for count in tenths {
            assert!((9_000..=11_000).contains(&count), "{tenths:?}");
        }
    }
}
