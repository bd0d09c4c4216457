//! Who may use the QA override: nobody (the default), anyone (`public`), or whoever knows the
//! token.
//!
//! The token never sits in the configuration in clear: the configuration carries a keyed
//! digest (HMAC-SHA256 under a per-rollout key), and the filter compares the digest of what
//! the client sent with it. Both digests are 32 bytes whatever the lengths of the tokens, and
//! the comparison has no early exit, so neither the response time nor anything else tells a
//! client how close its guess came or how long the token is.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;
/// Shortest digest key in bytes (RFC 2104: at least the hash's output, else the key is weak).
pub const MIN_KEY_LEN: usize = 16;
/// Longest token a client may send; longer values are not even digested.
pub const MAX_TOKEN_LEN: usize = 256;
/// The key under which a token written in clear (`override.token`, kept for configurations
/// written before digests) is digested when the configuration is loaded.
const CLEAR_TOKEN_KEY: &[u8] = b"sticky-canary override token";

/// The override rule of one rollout, ready for requests.
#[derive(Clone, PartialEq, Eq)]
pub enum Guard {
    /// The override header is ignored (and still removed before the upstream).
    Off,
    /// `<version>` alone forces the version: anyone who knows the header name can.
    Public,
    /// `<version>:<token>` forces the version when the token's digest matches.
    Token {
        /// The digest key.
        key: Vec<u8>,
        /// The token's digest under `key`.
        digest: [u8; DIGEST_LEN],
    },
}

impl std::fmt::Debug for Guard {
    /// Neither the key nor the digest are printed: logs are read by more people than configs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Guard::Off => "Off",
            Guard::Public => "Public",
            Guard::Token { .. } => "Token",
        })
    }
}

impl Guard {
    /// The guard of a token written in clear.
    pub fn clear_token(token: &str) -> Self {
        Guard::Token {
            key: CLEAR_TOKEN_KEY.to_vec(),
            digest: digest(CLEAR_TOKEN_KEY, token.as_bytes()),
        }
    }

    /// The version name an override header value names, when this guard lets it through.
    pub fn admit<'v>(&self, value: &'v [u8]) -> Option<&'v [u8]> {
        match self {
            Guard::Off => None,
            Guard::Public => Some(value),
            Guard::Token { key, digest: want } => {
                let colon = value.iter().position(|&b| b == b':')?;
                let token = &value[colon + 1..];
                if token.len() > MAX_TOKEN_LEN {
                    return None;
                }
                bool::from(digest(key, token).ct_eq(want)).then_some(&value[..colon])
            }
        }
    }
}

/// HMAC-SHA256 of `token` under `key` (RFC 2104), written out over `sha2` rather than taken
/// from the `hmac` crate, whose generic layers cost the `.wasm` several kilobytes.
pub fn digest(key: &[u8], token: &[u8]) -> [u8; DIGEST_LEN] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..DIGEST_LEN].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(token)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of lower-case or upper-case hex `text`, `None` when it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: &str) -> Guard {
        let key = b"0123456789abcdef".to_vec();
        Guard::Token {
            digest: digest(&key, token.as_bytes()),
            key,
        }
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test cases 2 (a short key) and 6 (a key longer than the block, hashed first).
        assert_eq!(
            to_hex(&digest(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            to_hex(&digest(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn only_the_right_token_admits() {
        let g = guard("s3cret");
        assert_eq!(g.admit(b"v2:s3cret"), Some(&b"v2"[..]));
        for value in [
            &b"v2"[..],
            b"v2:",
            b"v2:s3cre",
            b"v2:s3crett",
            b"v2:S3CRET",
            b":s3cret:",
            b"v2 s3cret",
        ] {
            assert_eq!(g.admit(value), None, "{value:?}");
        }
        assert_eq!(g.admit(b":s3cret"), Some(&b""[..]), "no name: no version");
        let long = [b"v2:".as_slice(), &[b'a'; MAX_TOKEN_LEN + 1]].concat();
        assert_eq!(g.admit(&long), None);
    }

    #[test]
    fn off_admits_nothing_and_public_everything() {
        assert_eq!(Guard::Off.admit(b"v2"), None);
        assert_eq!(Guard::Public.admit(b"v2"), Some(&b"v2"[..]));
    }

    #[test]
    fn a_clear_token_is_digested_like_any_other() {
        let g = Guard::clear_token("qa");
        assert_eq!(g.admit(b"v1:qa"), Some(&b"v1"[..]));
        assert_eq!(g.admit(b"v1:qb"), None);
        assert_eq!(format!("{g:?}"), "Token", "nothing secret in Debug");
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(from_hex("00abFF"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
