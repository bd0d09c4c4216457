//! One validation failure at one field, named the way the Kubernetes API server names it, so
//! test failures read like `kubectl apply` errors and the fake server can return them as causes.

use std::fmt;

/// Why a field was rejected; maps onto the API server's `field.ErrorType` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is absent.
    Required,
    /// A field the schema does not declare (the real server would silently prune it).
    UnknownField,
    /// The value has the wrong JSON type.
    TypeInvalid,
    /// The value is not one of the enumerated values.
    NotSupported,
    /// Any other constraint (pattern, format, range, oneOf, ...).
    Invalid,
    /// A string or object is too long.
    TooLong,
    /// An array or object has too many entries.
    TooMany,
    /// Two list entries share a key where the list must be a set or map.
    Duplicate,
}

impl FieldErrorKind {
    /// The `reason` string of a Status cause, as the real API server spells it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::UnknownField => "FieldValueForbidden",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Invalid => "FieldValueInvalid",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }
}

/// One rejected field: where (`spec.http[0].match[0]`), why, and a readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with `[i]` for list indexes; empty for the object root.
    pub path: String,
    /// Category, for the Status cause `reason`.
    pub kind: FieldErrorKind,
    /// Human-readable explanation, without the path.
    pub message: String,
}

impl FieldError {
    /// Builds an error at `path`.
    pub fn new(path: &str, kind: FieldErrorKind, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "<root>: {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every failure found in one object; validation reports them all at once like the API server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// True when any error's rendered form contains `needle`: lets tests assert on the path and
    /// message without depending on the order of errors.
    pub fn mentions(&self, needle: &str) -> bool {
        self.0.iter().any(|e| e.to_string().contains(needle))
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Appends `segment` to a dotted field path.
pub(crate) fn child_path(parent: &str, segment: &str) -> String {
    if parent.is_empty() {
        segment.to_owned()
    } else {
        format!("{parent}.{segment}")
    }
}

/// Appends a list index to a field path.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
