//! Syntax rules for the names the filter writes into headers, cookies and labels.
//!
//! A version name ends up as a header value, a cookie value and a Kubernetes label value
//! (the DestinationRule subset selects pods by it), so it must be valid as all three.

/// A name as it appears in error messages: quoted, with anything but printable ASCII escaped.
/// (Hand-rolled rather than `{:?}`, whose Unicode tables would add kilobytes to the `.wasm`.)
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for b in name.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

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
            "{} is not a valid version name: use at most {MAX_VERSION_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a Kubernetes label value)",
            quoted(name)
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
        Err(format!("{} is not a valid header name", quoted(name)))
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
        Err(format!("{} is not a valid cookie name", quoted(name)))
    }
}

/// A cookie path must start with `/` and hold no `;` or control characters.
pub fn check_cookie_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') && path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';') {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid cookie path: it must start with '/' and hold no ';', space or control character",
            quoted(path)
        ))
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

/// Shortest and longest route seal: long enough that nobody guesses it (16 characters of a
/// 64-character alphabet are 96 bits), short enough for any header.
pub const SEAL_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// A route seal: a token (so it survives any header) of [`SEAL_LEN`] characters.
pub fn check_seal(seal: &str) -> Result<(), String> {
    if !SEAL_LEN.contains(&seal.len()) {
        return Err(format!(
            "must be {} to {} characters long",
            SEAL_LEN.start(),
            SEAL_LEN.end()
        ));
    }
    check_token(seal)
}

/// Longest DNS label (RFC 1123), and so longest Kubernetes namespace.
pub const MAX_DNS_LABEL: usize = 63;
/// Longest DNS name (RFC 1123 subdomain), and so longest Kubernetes object name.
pub const MAX_DNS_NAME: usize = 253;

/// Whether `name` is an RFC 1123 DNS name (a Kubernetes "DNS subdomain"): labels of at most
/// 63 lower-case letters, digits and '-', starting and ending with a letter or digit, joined
/// by '.', at most 253 bytes in all. Lower-case only, because Envoy and Istio compare host and
/// cluster names byte for byte. With `single_label`, no '.' is allowed (a Kubernetes
/// namespace). One pass over the bytes: `str::split` would link a few hundred bytes of
/// searcher code into the `.wasm`.
fn dns_name(name: &[u8], single_label: bool) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut label = 0;
    let mut previous = b'.';
    for &b in name {
        let ok = match b {
            b'.' => !single_label && alphanumeric(previous),
            b'-' => previous != b'.',
            _ => alphanumeric(b),
        };
        label = if b == b'.' { 0 } else { label + 1 };
        if !ok || label > MAX_DNS_LABEL {
            return false;
        }
        previous = b;
    }
    name.len() <= MAX_DNS_NAME && alphanumeric(previous)
}

/// Whether `name` is an RFC 1123 DNS label: a Kubernetes namespace, or an object name that
/// must also be one (a Helm release's). The one rule the control side's checks share.
pub fn is_dns_label(name: &str) -> bool {
    dns_name(name.as_bytes(), true)
}

/// Whether `name` is an RFC 1123 DNS name: such labels joined by '.', at most
/// [`MAX_DNS_NAME`] bytes in all (a service host, a Kubernetes object name).
pub fn is_dns_name(name: &str) -> bool {
    dns_name(name.as_bytes(), false)
}

/// A service a rollout applies to: the host part of Istio's cluster names, a lower-case DNS
/// name such as `shop.prod.svc.cluster.local`.
pub fn check_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if is_dns_name(name) {
        Ok(())
    } else {
        // Concatenated rather than `format!`ted: the same text in less code.
        Err(quoted(name)
            + " is not a valid service name: use a lower-case DNS name, \
               e.g. shop.prod.svc.cluster.local")
    }
}

/// A cookie `Domain`: a lower-case DNS name such as `shop.example`, which shares the cookie
/// with every host under it. A URL, a port or a path there would make browsers drop the
/// cookie, and an IP address cannot be shared with other hosts; a leading dot is refused
/// rather than ignored as browsers do, so the configuration says exactly what is sent.
pub fn check_cookie_domain(domain: &str) -> Result<(), String> {
    let bytes = domain.as_bytes();
    let last_label = &bytes[bytes
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |dot| dot + 1)..];
    if dns_name(bytes, false) && !last_label.iter().all(u8::is_ascii_digit) {
        Ok(())
    } else {
        Err(quoted(domain)
            + " is not a domain: give a lower-case domain name without scheme, port, path or \
               leading dot, e.g. shop.example")
    }
}

/// A rollout's name: `<namespace>/<name>` of its `StickyCanary`, a Kubernetes namespace (a DNS
/// label) and object name (a DNS name), so names are unique across namespaces.
pub fn check_rollout_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let bytes = name.as_bytes();
    let slash = bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len());
    let (namespace, object) = bytes.split_at(slash);
    let object = object.get(1..).unwrap_or_default();
    if dns_name(namespace, true) && dns_name(object, false) {
        Ok(())
    } else {
        Err(quoted(name)
            + " is not a valid rollout name: use <namespace>/<name> of its StickyCanary, \
               e.g. prod/shop")
    }
}

/// RFC 6265 cookie-octets as a table: one load per byte instead of five range tests, for a
/// check that runs on every cookie value the filter reads.
const COOKIE_OCTETS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b == 0x21
            || (b >= 0x23 && b <= 0x2b)
            || (b >= 0x2d && b <= 0x3a)
            || (b >= 0x3c && b <= 0x5b)
            || (b >= 0x5d && b <= 0x7e);
        b += 1;
    }
    table
};

/// A cookie value the filter accepts as a client key: bounded and made of cookie-octets.
pub fn is_cookie_value(value: &[u8]) -> bool {
    value.iter().all(|&b| COOKIE_OCTETS[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_octets_are_rfc_6265s() {
        // cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
        let octets: Vec<u8> = (0..=255u8).filter(|&b| is_cookie_value(&[b])).collect();
        let expected: Vec<u8> = [
            0x21..=0x21,
            0x23..=0x2b,
            0x2d..=0x3a,
            0x3c..=0x5b,
            0x5d..=0x7e,
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(octets, expected);
    }

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
    fn cookie_domains() {
        for good in [
            "shop.example",
            "example",
            "a-1.shop.test",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(check_cookie_domain(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "https://shop.example",
            "shop.example:8443",
            "shop.example/api",
            ".shop.example",
            "shop.example.",
            "Shop.Example",
            "shop example",
            "127.0.0.1",
            "shop..example",
            "-shop.example",
        ] {
            let err = check_cookie_domain(bad).expect_err(bad);
            assert!(err.contains("is not a domain"), "{bad}: {err}");
        }
    }

    #[test]
    fn service_names() {
        for good in [
            "shop",
            "shop.prod.svc.cluster.local",
            "a-1.b2",
            "9lives",
            &"x".repeat(63),
        ] {
            assert!(check_service_name(good).is_ok(), "{good}");
        }
        let long = vec!["x".repeat(63); 4].join(".");
        for bad in [
            "",
            "Shop.prod",
            "shop..prod",
            ".shop",
            "shop.",
            "-shop",
            "shop-.prod",
            "shop_1",
            "shop:8080",
            "outbound|8080||shop",
            &"x".repeat(64),
            &long,
        ] {
            let err = check_service_name(bad).expect_err(bad);
            assert!(
                bad.is_empty() || err.contains("not a valid service name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn dns_labels_and_names() {
        let label = "x".repeat(MAX_DNS_LABEL);
        for good in ["a", "shop-2", "0a", label.as_str()] {
            assert!(is_dns_label(good) && is_dns_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", &"x".repeat(MAX_DNS_LABEL + 1)] {
            assert!(!is_dns_label(bad) && !is_dns_name(bad), "{bad}");
        }
        assert!(is_dns_name("shop.prod.svc") && !is_dns_label("shop.prod.svc"));
        for bad in ["a.", ".a", "a..b", "a-.b", "a.-b"] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn rollout_names() {
        for good in [
            "prod/shop",
            "team-a/shop.v2",
            "a/b",
            &format!("{}/x", "n".repeat(63)),
        ] {
            assert!(check_rollout_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "shop",
            "/shop",
            "prod/",
            "prod/shop/x",
            "Prod/shop",
            "prod.eu/shop",
            "prod/Shop",
            "prod/shop_1",
            &format!("{}/x", "n".repeat(64)),
        ] {
            let err = check_rollout_name(bad).expect_err(bad);
            assert!(
                bad.is_empty() || err.contains("not a valid rollout name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn quoting_escapes_everything_but_printable_ascii() {
        assert_eq!(quoted("v1"), "\"v1\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("é\n"), "\"\\xc3\\xa9\\x0a\"");
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
