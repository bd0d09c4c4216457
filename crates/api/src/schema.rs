//! OpenAPI schemas of the filter's wire types as they appear in the `StickyCanary` CRD.
//!
//! The filter crate stays free of schema dependencies (it compiles to Wasm), so these are
//! written by hand; the tests below serialize every type fully populated and check that the
//! schema lists exactly its fields and enum values, so a new filter field fails the build's
//! tests instead of being pruned by the API server.

use schemars::{json_schema, Schema, SchemaGenerator};

/// `spec.versions`: name, weight and drain flag of each version, stable first.
pub fn versions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["name", "weight"],
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 63 },
                "weight": { "type": "number", "minimum": 0, "maximum": 100 },
                "drain": { "type": "boolean" }
            }
        }
    })
}

/// `spec.filter.cookie`.
pub fn cookie(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "idName": { "type": "string" },
            "domain": { "type": "string" },
            "path": { "type": "string" },
            "maxAge": { "type": "integer", "format": "uint64", "minimum": 1 },
            "httpOnly": { "type": "boolean" },
            "secure": { "type": "boolean" },
            "sameSite": { "type": "string", "enum": ["Lax", "Strict", "None"] }
        }
    })
}

/// `spec.filter.override`: off unless guarded by a token (its digest, or the token in clear)
/// or `public`.
pub fn override_(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "header": { "type": "string" },
            "token": { "type": "string" },
            "tokenDigest": {
                "type": "object",
                "required": ["key", "hmacSha256"],
                "properties": {
                    "key": { "type": "string", "pattern": "^[0-9a-f]{32,}$" },
                    "hmacSha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" }
                }
            },
            "public": { "type": "boolean" }
        }
    })
}

/// `spec.filter.keySources`: each item names exactly one header or one cookie.
pub fn key_sources(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "maxProperties": 1,
            "minProperties": 1,
            "properties": {
                "header": { "type": "string" },
                "cookie": { "type": "string" }
            }
        }
    })
}

/// `spec.filter.repin`.
pub fn repin(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": ["navigation", "expiry"] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use sticky_canary_filter::config::{
        CookieConfig, KeySource, OverrideConfig, Repin, SameSite, TokenDigest,
    };
    use sticky_canary_filter::VersionWeight;

    fn schema_of(f: fn(&mut SchemaGenerator) -> Schema) -> Value {
        f(&mut SchemaGenerator::default()).to_value()
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn enum_values(schema: &Value) -> Vec<Value> {
        schema["enum"].as_array().unwrap().clone()
    }

    #[test]
    fn object_schemas_list_exactly_the_fields_of_the_filter_types() {
        let cookie = serde_json::to_value(CookieConfig {
            domain: Some("shop.example".into()),
            ..CookieConfig::default()
        })
        .unwrap();
        let override_ = serde_json::to_value(OverrideConfig {
            header: "x".into(),
            token: Some("t".into()),
            token_digest: Some(TokenDigest::of("t", &[0; 16])),
            public: true,
        })
        .unwrap();
        let version = serde_json::to_value(VersionWeight {
            drain: true,
            ..VersionWeight::new("v1", 0.0)
        })
        .unwrap();
        let cases = [
            (cookie, schema_of(super::cookie)),
            (override_.clone(), schema_of(super::override_)),
            (
                override_["tokenDigest"].clone(),
                schema_of(super::override_)["properties"]["tokenDigest"].clone(),
            ),
            (version, schema_of(versions)["items"].clone()),
        ];
        for (value, schema) in cases {
            assert_eq!(keys(&value), keys(&schema["properties"]), "{schema}");
        }
    }

    #[test]
    fn enum_schemas_list_exactly_the_variants() {
        let same_site: Vec<Value> = [SameSite::Lax, SameSite::Strict, SameSite::None]
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(
            enum_values(&schema_of(cookie)["properties"]["sameSite"]),
            same_site
        );
        let repins: Vec<Value> = [Repin::Navigation, Repin::Expiry]
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(enum_values(&schema_of(repin)), repins);
    }

    #[test]
    fn key_source_schema_matches_both_variants() {
        let schema = schema_of(key_sources);
        let sources = serde_json::to_value([
            KeySource::Header("x-user-id".into()),
            KeySource::Cookie("session".into()),
        ])
        .unwrap();
        assert_eq!(
            sources,
            json!([{"header": "x-user-id"}, {"cookie": "session"}])
        );
        let allowed = keys(&schema["items"]["properties"]);
        for source in sources.as_array().unwrap() {
            assert!(keys(source).is_subset(&allowed), "{source}");
        }
    }
}
