//! Syntax rules for the names the filter writes into headers, cookies and labels.
//!
//! A version name ends up as a header value, a cookie value and a Kubernetes label value
//! (the DestinationRule subset selects pods by it), so it must be valid as all three.

/// Longest Kubernetes label value.
pub const MAX_VERSION_NAME: usize = 63;

/// A version name must be a valid Kubernetes label value, which is also a valid header and cookie value.
pub fn check_version_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let bytes = name.as_bytes();
    let ok = bytes.len() <= MAX_VERSION_NAME
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid version name: use at most {MAX_VERSION_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a Kubernetes label value)"
        ))
    }
}

/// RFC 7230 `tchar`: the characters of header names and cookie names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name must be an RFC 7230 token.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.bytes().all(is_tchar) && !name.starts_with(':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

/// A cookie name must be an RFC 6265 token.
pub fn check_cookie_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid cookie name"))
    }
}

/// A cookie path must start with `/` and hold no `;` or control characters.
pub fn check_cookie_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') && path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';') {
        Ok(())
    } else {
        Err(format!("{path:?} is not a valid cookie path: it must start with '/' and hold no ';', space or control character"))
    }
}

/// An override token: visible ASCII without separators, so it survives any header.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("must not be empty; leave `token` out to disable the guard".into());
    }
    if token.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err("is not a valid token: use letters, digits and !#$%&'*+-.^_`|~ only".into())
    }
}

/// A cookie value the filter accepts as a client key: bounded and made of cookie-octets.
pub fn is_cookie_value(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b == 0x21
            || (0x23..=0x2b).contains(&b)
            || (0x2d..=0x3a).contains(&b)
            || (0x3c..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        for good in ["v1", "V2", "2024-01-01", "a", "canary_1.2", &"x".repeat(63)] {
            assert!(check_version_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-v1",
            "v1-",
            "v 1",
            "v1:x",
            "é",
            "v1;",
            &"x".repeat(64),
            "v1\n",
        ] {
            assert!(check_version_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_and_cookie_names() {
        assert!(check_header_name("x-user-id").is_ok());
        assert!(check_header_name(":authority").is_err());
        assert!(check_header_name("x user").is_err());
        assert!(check_cookie_name("JSESSIONID").is_ok());
        assert!(check_cookie_name("a;b").is_err());
        assert!(check_cookie_path("/").is_ok());
        assert!(check_cookie_path("shop").is_err());
        assert!(check_cookie_path("/a b").is_err());
        assert!(check_token("Abc-123_~").is_ok());
        assert!(check_token("a:b").is_err());
    }

    #[test]
    fn cookie_values() {
        assert!(is_cookie_value(b"abc-DEF_123"));
        assert!(!is_cookie_value(b"a b"));
        assert!(!is_cookie_value(b"a,b"));
        assert!(!is_cookie_value(b"a\"b"));
        assert!(!is_cookie_value(&[0xc3, 0xa9]));
    }
}
