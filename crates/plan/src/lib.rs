//! `stickyctl plan`: one file for every workload of a release, each entry set to the canary's
//! share with one command, previewed first and applied only once every entry is valid.
//!
//! Pure core, thin shell: [`file`](mod@file) parses and checks the plan, [`naming`] maps a project to
//! its objects, and each workload type has a pure edit from the live objects and the desired
//! weight to the writes (or a [`Refusal`] naming the entry's field): [`sticky`],
//! [`ingress`], [`split`] (of a VirtualService, [`vsvc`], or of an HTTPRoute, [`httproute`]),
//! [`replicas`], [`singleton`]. [`preview`] says what would change and
//! where each entry stands; [`run`] reads, previews, checks every write with the server
//! (a server-side dry run) and only then applies, entry by entry, saying which are applied.
//!
//! A front end: `STICKY` entries are applied through `runtime` as every command is; it
//! depends on no other front end.

#![deny(missing_docs)]

pub mod cluster;
pub mod command;
pub mod entry;
pub mod file;
pub mod httproute;
pub mod ingress;
pub mod naming;
pub mod preview;
pub mod replicas;
pub mod run;
pub mod singleton;
pub mod split;
pub mod sticky;
pub mod vsvc;
pub mod workload;

use serde_json::Value;

/// Why an entry cannot be applied to its objects as they are: the entry's field that leads
/// there (`canary`, `stable`, `weight`, ...) and what is wrong; raised before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The plan entry's field.
    pub field: &'static str,
    /// What is wrong, naming the object.
    pub message: String,
}

impl Refusal {
    /// A refusal of `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What a plan writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `networking.k8s.io/v1` Ingress, replaced whole.
    Ingress,
    /// `networking.istio.io/v1` VirtualService, replaced whole.
    VirtualService,
    /// `gateway.networking.k8s.io/v1` HTTPRoute, replaced whole.
    HttpRoute,
    /// The `scale` subresource of an `apps/v1` Deployment.
    DeploymentScale,
}

/// One object of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its kind.
    pub kind: ObjectKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Object {
    /// An object of `kind`.
    pub fn new(kind: ObjectKind, namespace: &str, name: &str) -> Self {
        Object {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `Ingress prod/web-canary`, `Deployment prod/worker`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            ObjectKind::Ingress => "Ingress",
            ObjectKind::VirtualService => "VirtualService",
            ObjectKind::HttpRoute => "HTTPRoute",
            ObjectKind::DeploymentScale => "Deployment",
        };
        format!("{kind} {}/{}", self.namespace, self.name)
    }
}

/// One field an entry changes, for the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field, e.g. `replicas` or `annotations[nginx.ingress.kubernetes.io/canary-weight]`.
    pub field: String,
    /// Its value now (`-` when absent).
    pub from: String,
    /// Its value after the write.
    pub to: String,
}

impl FieldChange {
    /// A change of `field` from `from` to `to`.
    pub fn new(field: impl Into<String>, from: impl Into<String>, to: impl Into<String>) -> Self {
        FieldChange {
            field: field.into(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// A replace of one object as it was read: `desired` carries the resourceVersion of the read,
/// so a change by anyone since is a 409 and the entry is read and edited again.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The object written.
    pub object: Object,
    /// The whole object to write (an Ingress, a VirtualService, an HTTPRoute, a `Scale`).
    pub desired: Value,
    /// What changes in it.
    pub changes: Vec<FieldChange>,
}
