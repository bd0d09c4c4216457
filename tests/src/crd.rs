//! CustomResourceDefinitions loaded from YAML: which kinds exist, under which group, versions and
//! plural, and the schema each served version is validated against. The fake API server routes
//! by them and [`CrdSet::validate`] checks objects with them.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::field_error::{FieldError, FieldErrorKind, ValidationErrors};
use crate::{object_meta, schema_validation};

/// One kind defined by a CRD.
#[derive(Debug, Clone)]
pub struct ResourceKind {
    /// API group, e.g. `networking.istio.io`.
    pub group: String,
    /// `VirtualService`.
    pub kind: String,
    /// `VirtualServiceList`.
    pub list_kind: String,
    /// `virtualservices`: the URL segment.
    pub plural: String,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Served versions only, in the CRD's order.
    pub versions: Vec<ServedVersion>,
}

/// One served version of a kind.
#[derive(Debug, Clone)]
pub struct ServedVersion {
    /// `v1`, `v1beta1`, ...
    pub name: String,
    /// The `openAPIV3Schema` (may be `Value::Null` when the CRD gives none: anything goes).
    pub schema: Value,
    /// With a status subresource, main-resource writes ignore `status` and `/status` writes
    /// touch only `status`.
    pub status_subresource: bool,
}

/// A CEL rule (`x-kubernetes-validations`) that this crate cannot evaluate: listed so tests and
/// readers can see exactly what is not enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRule {
    /// `VirtualService.networking.istio.io/v1`.
    pub kind: String,
    /// Schema path of the node carrying the rule, e.g. `spec.http[].timeout`.
    pub path: String,
    /// The CEL expression.
    pub rule: String,
}

/// Every kind known from the loaded CRD documents.
#[derive(Debug, Clone, Default)]
pub struct CrdSet {
    kinds: Vec<ResourceKind>,
}

/// A CRD file that cannot be used.
#[derive(Debug)]
pub struct CrdError(pub String);

impl fmt::Display for CrdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrdError {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdDocument {
    spec: CrdSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdSpec {
    group: String,
    names: CrdNames,
    scope: String,
    versions: Vec<CrdVersion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdNames {
    kind: String,
    plural: String,
    list_kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdVersion {
    name: String,
    served: bool,
    #[serde(default)]
    schema: Option<CrdValidation>,
    #[serde(default)]
    subresources: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrdValidation {
    #[serde(rename = "openAPIV3Schema")]
    open_api_v3_schema: Value,
}

impl CrdSet {
    /// Loads the CRD documents of a multi-document YAML text; other documents are skipped, so a
    /// manifest file mixing a CRD with RBAC objects can be passed as is. `source` names the text
    /// in errors.
    pub fn from_yaml_str(text: &str, source: &str) -> Result<Self, CrdError> {
        let mut set = Self::default();
        for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(document)
                .map_err(|e| CrdError(format!("{source}: document {index}: not YAML: {e}")))?;
            if value.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let crd: CrdDocument = serde_json::from_value(value).map_err(|e| {
                CrdError(format!(
                    "{source}: document {index}: not a CustomResourceDefinition: {e}"
                ))
            })?;
            set.kinds.push(ResourceKind::from(crd));
        }
        Ok(set)
    }

    /// Loads the CRD documents of one YAML file.
    pub fn from_file(path: &Path) -> Result<Self, CrdError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CrdError(format!("{}: {e}", path.display())))?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Adds the kinds of `other`; a kind defined twice keeps the later definition, so a project
    /// CRD can be reloaded over an older one.
    pub fn merge(&mut self, other: CrdSet) {
        for kind in other.kinds {
            self.kinds
                .retain(|k| !(k.group == kind.group && k.kind == kind.kind));
            self.kinds.push(kind);
        }
    }

    /// All kinds, for listing.
    pub fn kinds(&self) -> &[ResourceKind] {
        &self.kinds
    }

    /// The kind and served version for an object's `apiVersion` and `kind`.
    pub fn find(&self, api_version: &str, kind: &str) -> Option<(&ResourceKind, &ServedVersion)> {
        // The core group's apiVersion is the version alone (`v1`).
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = self
            .kinds
            .iter()
            .find(|k| k.group == group && k.kind == kind)?;
        Some((resource, resource.version(version)?))
    }

    /// The kind and served version for a URL's group, version and plural.
    pub fn find_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<(&ResourceKind, &ServedVersion)> {
        let resource = self
            .kinds
            .iter()
            .find(|k| k.group == group && k.plural == plural)?;
        Some((resource, resource.version(version)?))
    }

    /// True when `apiVersion`/`kind` is defined by one of the loaded CRDs.
    pub fn defines(&self, api_version: &str, kind: &str) -> bool {
        self.find(api_version, kind).is_some()
    }

    /// Sets the defaults of `object`'s schema in it (see
    /// [`schema_validation::apply_defaults`]), as the API server does on a write; nothing for
    /// an unknown kind.
    pub fn apply_defaults(&self, object: &mut Value) {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some((_, version)) = self.find(&api_version, &kind) {
            schema_validation::apply_defaults(&version.schema, object, true);
        }
    }

    /// Validates a whole object (`apiVersion`, `kind`, `metadata`, the schema) like the API server
    /// does on a write, except that unknown fields are errors. An unknown kind is an error too.
    pub fn validate(&self, object: &Value) -> Result<(), ValidationErrors> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((resource, version)) = self.find(api_version, kind) else {
            return Err(ValidationErrors(vec![FieldError::new(
                "kind",
                FieldErrorKind::NotSupported,
                format!("no CRD serves kind {kind:?} in apiVersion {api_version:?}"),
            )]));
        };
        let mut errors = Vec::new();
        object_meta::validate_metadata(object, resource.namespaced, &mut errors);
        if !version.schema.is_null() {
            schema_validation::validate(&version.schema, object, "", true, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// Every CEL rule of every served version: they are *not* enforced by [`CrdSet::validate`],
    /// because no CEL interpreter with the Kubernetes extension functions is available here.
    pub fn cel_rules(&self) -> Vec<CelRule> {
        let mut rules = Vec::new();
        for resource in &self.kinds {
            for version in &resource.versions {
                let kind = format!("{}.{}/{}", resource.kind, resource.group, version.name);
                collect_cel_rules(&version.schema, "", &kind, &mut rules);
            }
        }
        rules
    }
}

fn collect_cel_rules(schema: &Value, path: &str, kind: &str, rules: &mut Vec<CelRule>) {
    let Some(node) = schema.as_object() else {
        return;
    };
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = rule.get("rule").and_then(Value::as_str) {
            rules.push(CelRule {
                kind: kind.to_owned(),
                path: path.to_owned(),
                rule: text.to_owned(),
            });
        }
    }
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        collect_cel_rules(child, &child_path, kind, rules);
    }
    if let Some(items) = node.get("items") {
        collect_cel_rules(items, &format!("{path}[]"), kind, rules);
    }
    if let Some(values) = node.get("additionalProperties") {
        collect_cel_rules(values, &format!("{path}.*"), kind, rules);
    }
}

impl ResourceKind {
    /// A served version by name.
    pub fn version(&self, name: &str) -> Option<&ServedVersion> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// `virtualservices.networking.istio.io`, as Status details and messages name a resource.
    pub fn qualified_plural(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

impl From<CrdDocument> for ResourceKind {
    fn from(crd: CrdDocument) -> Self {
        let spec = crd.spec;
        Self {
            list_kind: spec
                .names
                .list_kind
                .unwrap_or_else(|| format!("{}List", spec.names.kind)),
            group: spec.group,
            kind: spec.names.kind,
            plural: spec.names.plural,
            namespaced: spec.scope == "Namespaced",
            versions: spec
                .versions
                .into_iter()
                .filter(|v| v.served)
                .map(|v| ServedVersion {
                    status_subresource: v
                        .subresources
                        .as_ref()
                        .and_then(|s| s.get("status"))
                        .is_some(),
                    name: v.name,
                    schema: v
                        .schema
                        .map(|s| s.open_api_v3_schema)
                        .unwrap_or(Value::Null),
                })
                .collect(),
        }
    }
}
