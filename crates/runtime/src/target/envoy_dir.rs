//! The plain-Envoy target: a directory Envoy reads its listeners and clusters from.
//!
//! The directory holds `envoy-layout.json` (listen port, `.wasm` path, one upstream per
//! version; written by whoever starts Envoy), `stickycanary.json` (the rollout: the same
//! `StickyCanary` object as on Kubernetes, spec and status) and the rendered `lds.json` and
//! `cds.json`, each replaced atomically so Envoy never reads half a file.
//!
//! Operators are serialized by an exclusive lock on `.stickyctl.lock`, held from the first read
//! to the last write of a command; a resourceVersion check on every save also refuses a
//! rollout file that changed behind the lock's back (a hand edit), so racing writers end in
//! one consistent state.

use std::fs::File;
use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::Value;
use sticky_canary_filter::PluginConfig;

use super::{Doc, Plan, Target};
use crate::error::{Changed, Error};
use crate::fsutil::{write_atomic, write_atomic_as};
use api::{StickyCanary, StickyCanaryStatus};
use render::envoy::{render_cds, render_lds, EnvoyLayout, CDS_FILE, LAYOUT_FILE, LDS_FILE};
use render::seal;

/// A random uid in the API server's form (a version 4 UUID).
fn new_uid() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Runtime(format!("no randomness for the rollout's uid: {e}")))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = sticky_canary_filter::guard::to_hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// File of the rollout in the directory.
pub const ROLLOUT_FILE: &str = "stickycanary.json";
/// File keeping the QA override token (readable by its owner only).
pub const OVERRIDE_TOKEN_FILE: &str = "override-token";
/// File locked while a command runs.
pub const LOCK_FILE: &str = ".stickyctl.lock";

/// A locked Envoy config directory; the lock is released on drop.
#[derive(Debug)]
pub struct EnvoyDir {
    dir: PathBuf,
    _lock: File,
}

impl EnvoyDir {
    /// Locks `dir`, waiting for another operator to finish.
    pub async fn open(dir: &Path) -> Result<Self, Error> {
        // A mistyped path is bad input (exit 2), not a runtime failure on the lock file.
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: no such directory (--envoy-dir names the directory Envoy reads {LDS_FILE} from)",
                dir.display()
            )));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| Error::Runtime(format!("waiting for the lock: {e}")))?
            .map_err(|e| Error::io(&lock_path, e))?;
        Ok(EnvoyDir {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn read_json(&self, file: &str) -> Result<Option<Value>, Error> {
        let path = self.path(file);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn write_json(&self, file: &str, value: &impl serde::Serialize) -> Result<(), Error> {
        let path = self.path(file);
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(|e| Error::io(&path, e))
    }

    fn load_rollout(&self) -> Result<Option<StickyCanary>, Error> {
        self.read_json(ROLLOUT_FILE)?
            .map(|value| {
                serde_json::from_value(value).map_err(|e| {
                    Error::Invalid(format!("{}: {e}", self.path(ROLLOUT_FILE).display()))
                })
            })
            .transpose()
    }

    /// Writes `next` if the stored rollout still has `next`'s resourceVersion.
    fn store(&self, mut next: StickyCanary) -> Result<StickyCanary, Error> {
        let stored = self.load_rollout()?;
        let stored_version = stored
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone());
        if stored_version != next.metadata.resource_version {
            return Err(Error::Conflict(Changed::new(ROLLOUT_FILE)));
        }
        let version = |c: &StickyCanary| {
            c.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        let generation = stored
            .as_ref()
            .and_then(|s| s.metadata.generation)
            .unwrap_or(0);
        let spec_changed = stored.as_ref().is_none_or(|s| s.spec != next.spec);
        next.metadata.generation = Some(generation + i64::from(spec_changed));
        next.metadata.resource_version =
            Some((stored.as_ref().and_then(version).unwrap_or(0) + 1).to_string());
        // As the API server does: a random uid once, which the route seal derives from.
        if next.metadata.uid.is_none() {
            next.metadata.uid = Some(new_uid()?);
        }
        self.write_json(ROLLOUT_FILE, &next)?;
        Ok(next)
    }

    fn layout(&self) -> Result<EnvoyLayout, Error> {
        let path = self.path(LAYOUT_FILE);
        let value = self.read_json(LAYOUT_FILE)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{} is missing: the envoy dir needs the layout of the Envoy it drives (listen port, wasm path, one upstream per version)",
                path.display()
            ))
        })?;
        serde_json::from_value(value)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

impl Target for EnvoyDir {
    async fn load(&self) -> Result<Option<StickyCanary>, Error> {
        self.load_rollout()
    }

    async fn save(&self, canary: &StickyCanary) -> Result<StickyCanary, Error> {
        self.store(canary.clone())
    }

    async fn save_status(
        &self,
        canary: &StickyCanary,
        status: &StickyCanaryStatus,
    ) -> Result<(), Error> {
        let mut next = canary.clone();
        next.status = Some(status.clone());
        self.store(next).map(drop)
    }

    async fn plan(&self, canary: &StickyCanary) -> Result<Plan, Error> {
        let layout = self.layout()?;
        let lds = render_lds(&self.plugin_config(canary), &layout)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        // Clusters first: a listener must never route to a cluster Envoy does not know yet.
        let doc = |label: &str, desired: Value| -> Result<Doc, Error> {
            Ok(Doc {
                label: label.to_owned(),
                current: self.read_json(label)?,
                owned: desired.clone(),
                desired: Some(desired),
            })
        };
        let objects = vec![doc(CDS_FILE, render_cds(&layout))?, doc(LDS_FILE, lds)?];
        let writes = objects.iter().filter(|d| !d.in_sync()).cloned().collect();
        Ok(Plan {
            objects,
            writes,
            routing: None,
        })
    }

    /// The spec's, sealed. A plain Envoy is a gateway: it never trusts an incoming header.
    fn plugin_config(&self, canary: &StickyCanary) -> PluginConfig {
        let mut config = canary.spec.plugin_config();
        config.trust_incoming_header = false;
        config.seal = canary.metadata.uid.as_deref().map(seal::of_uid);
        render::placement::digest_clear_token(&mut config, &canary.name_any());
        config
    }

    async fn keep_override_token(&self, _: &StickyCanary, token: &str) -> Result<String, Error> {
        let path = self.path(OVERRIDE_TOKEN_FILE);
        let mut text = token.as_bytes().to_vec();
        text.push(b'\n');
        write_atomic_as(&path, &text, 0o600).map_err(|e| Error::io(&path, e))?;
        Ok(format!("cat {}", path.display()))
    }

    async fn write(&self, doc: &Doc) -> Result<(), Error> {
        match &doc.desired {
            Some(desired) => self.write_json(&doc.label, desired),
            None => Err(Error::Runtime(format!(
                "{}: the Envoy files are never deleted",
                doc.label
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::StickyCanarySpec;
    use serde_json::json;

    fn layout_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let layout = json!({"listenPort": 10000, "wasmPath": "/x.wasm",
            "upstreams": {"v1": "127.0.0.1:1", "v2": "127.0.0.1:2"}});
        std::fs::write(dir.path().join(LAYOUT_FILE), layout.to_string()).unwrap();
        dir
    }

    #[tokio::test]
    async fn save_bumps_versions_and_refuses_stale_writes() {
        let dir = layout_dir();
        let target = EnvoyDir::open(dir.path()).await.unwrap();
        assert!(target.load().await.unwrap().is_none());
        let fresh = StickyCanary::new("shop", StickyCanarySpec::new("shop", "v1"));
        let saved = target.save(&fresh).await.unwrap();
        assert_eq!(saved.metadata.generation, Some(1));
        assert_eq!(saved.metadata.resource_version.as_deref(), Some("1"));
        assert!(matches!(target.save(&fresh).await, Err(Error::Conflict(_))));
        target
            .save_status(&saved, &StickyCanaryStatus::default())
            .await
            .unwrap();
        let loaded = target.load().await.unwrap().unwrap();
        assert_eq!(
            loaded.metadata.generation,
            Some(1),
            "status is not a spec change"
        );
        assert_eq!(loaded.metadata.resource_version.as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn plan_renders_clusters_before_listeners() {
        let dir = layout_dir();
        let target = EnvoyDir::open(dir.path()).await.unwrap();
        let canary = StickyCanary::new("shop", StickyCanarySpec::new("shop", "v1"));
        let plan = target.plan(&canary).await.unwrap();
        let labels: Vec<_> = plan.writes.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, [CDS_FILE, LDS_FILE]);
        for doc in &plan.writes {
            target.write(doc).await.unwrap();
        }
        assert!(target.plan(&canary).await.unwrap().writes.is_empty());
    }

    #[tokio::test]
    async fn a_missing_directory_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo");
        let err = EnvoyDir::open(&missing).await.unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
        assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
        assert!(!missing.exists(), "nothing is created");
    }

    #[tokio::test]
    async fn missing_layout_or_upstream_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let target = EnvoyDir::open(dir.path()).await.unwrap();
        let canary = StickyCanary::new("shop", StickyCanarySpec::new("shop", "v9"));
        let err = target.plan(&canary).await.unwrap_err();
        assert!(
            err.to_string().contains("envoy-layout.json is missing"),
            "{err}"
        );
        drop(target);
        let dir = layout_dir();
        let target = EnvoyDir::open(dir.path()).await.unwrap();
        let err = target.plan(&canary).await.unwrap_err();
        assert!(err.to_string().contains("\"v9\""), "{err}");
        assert_eq!(err.exit_code(), crate::error::EXIT_INVALID);
    }
}
