//! Policy plus TUF: the one decision both the bindir executable and the service make.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::image::Descriptor;
use tuf_oci::{ImageRef, Registry, RegistryConfig, TrustConfig, VerifiedTarget, Verifier};

use crate::policy::{Decision, Default, Judged, Policy};

/// Whether a record made after its name was verified still stands ([`Engine::standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The name verifies to the record's target, or the policy lets it through unverified.
    Holds,
    /// It does not verify now (the reason): TUF signs the name for other content, or not at
    /// all, or its metadata fails a check (expired, rolled back, badly signed).
    Withdrawn(String),
    /// It cannot be told now: the registry, or the trusted metadata on disk, could not be
    /// read (the reason).
    Unknown(String),
}

/// The answer for one reference.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Whether the pull may proceed.
    pub allowed: bool,
    /// One line: what was verified, or which check failed (for containerd's error message).
    pub reason: String,
    /// The scope that decided.
    pub scope: Option<String>,
    /// The verified target, when TUF verified the reference.
    pub target: Option<VerifiedTarget>,
}

impl Answer {
    fn refuse(scope: Option<&str>, reason: String) -> Self {
        Answer {
            allowed: false,
            reason,
            scope: scope.map(str::to_string),
            target: None,
        }
    }

    fn allow(reason: String) -> Self {
        Answer {
            allowed: true,
            reason,
            scope: None,
            target: None,
        }
    }
}

/// A loaded policy with one verifier per protected scope.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    backends: Vec<Backend>,
    /// Each scope's trust (root, cache, limits), also used for metadata carried by imports.
    trusts: Vec<TrustConfig>,
}

/// Where a scope's metadata comes from.
#[derive(Debug)]
enum Backend {
    /// Registries (following pointers, or the scope's metadata repository).
    Registry(Verifier),
    /// An OCI layout on disk (a bundle from `tuf-oci copy`): air-gapped nodes, no network.
    Bundle { dir: PathBuf, trust: TrustConfig },
}

impl Backend {
    async fn resolve(&self, image: &ImageRef) -> tuf_oci::Result<VerifiedTarget> {
        match self {
            Backend::Registry(verifier) => verifier.resolve(image).await,
            Backend::Bundle { dir, trust } => {
                let store = tuf_oci::store::LayoutStore::open(dir, false)?;
                resolve_in_layout(&store, image, trust).await
            }
        }
    }
}

/// Resolves `image` against the TUF metadata in an OCI layout (no network).
async fn resolve_in_layout(
    store: &tuf_oci::store::LayoutStore,
    image: &ImageRef,
    trust: &TrustConfig,
) -> tuf_oci::Result<VerifiedTarget> {
    let reference = match (&image.tag, &image.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(digest)) => digest.clone(),
        (None, None) => unreachable!("references have a tag or a digest"),
    };
    let (verified, _) =
        tuf_oci::resolve_in_store(store, &image.repository.path, &reference, trust).await?;
    tuf_oci::check_pin(image, verified)
}

/// Whether `layout` carries TUF metadata for `image` (its repository's `tuf-metadata` tag is
/// there).
async fn has_metadata_for(layout: &tuf_oci::store::LayoutStore, image: &ImageRef) -> bool {
    use tuf_oci::store::ContentStore;
    let pointer = layout
        .manifest(
            &image.repository.path,
            tuf_oci::layout::METADATA_TAG,
            tuf_oci::layout::METADATA_INDEX_LIMIT,
        )
        .await;
    matches!(pointer, Ok(Some(_)))
}

/// What the policy makes of a reference before any TUF work.
enum Coverage<'a> {
    /// It must verify in scope `index`.
    Protected {
        index: usize,
        scope: &'a str,
        image: ImageRef,
    },
    /// The policy answers without verifying (unprotected, uncovered, unparsable).
    Decided(Box<Answer>),
}

impl Engine {
    /// Loads every scope's trusted root; fails on the first unusable one.
    pub fn new(policy: Policy) -> anyhow::Result<Self> {
        // Set up for the first scope in a registry: bundles need none.
        let mut registry: Option<Registry> = None;
        let mut backends = Vec::new();
        let mut trusts = Vec::new();
        for scope in &policy.scopes {
            let root = std::fs::read(&scope.root).map_err(|e| {
                anyhow::anyhow!(
                    "scope {}: trusted root {}: {e}",
                    scope.name,
                    scope.root.display()
                )
            })?;
            let bundle = scope
                .metadata
                .as_deref()
                .map(crate::policy::Metadata::parse)
                .transpose()?;
            let metadata_override = match &bundle {
                Some(crate::policy::Metadata::Registry(repository)) => Some(repository.clone()),
                Some(crate::policy::Metadata::Bundle { path, .. }) => Some(tuf_oci::Repository {
                    registry: "bundle.invalid".into(),
                    path: path.clone(),
                }),
                None => None,
            };
            let trust = TrustConfig {
                root,
                metadata_override,
                // One trusted state per trusted root (a directory each), shared by every
                // scope trusting it: an older copy read through one scope is a rollback of
                // what another has seen.
                cache_dir: Some(policy.cache_dir.clone()),
                signed_as: scope.signed_as.clone(),
                refresh_interval: Duration::from_secs(policy.refresh_interval_seconds),
                limits: tuf_oci::Limits {
                    clock_skew: Duration::from_secs(policy.clock_skew_seconds),
                    ..tuf_oci::Limits::default()
                },
            };
            let backend = match bundle {
                Some(crate::policy::Metadata::Bundle { dir, .. }) => {
                    tuf_oci::updater::trusted_root(&trust.root)
                        .map_err(|e| anyhow::anyhow!("scope {}: {e}", scope.name))?;
                    Backend::Bundle {
                        dir,
                        trust: trust.clone(),
                    }
                }
                _ => {
                    let registry = match &registry {
                        Some(registry) => registry.clone(),
                        None => registry
                            .insert(Registry::new(&RegistryConfig {
                                insecure_hosts: policy.insecure_registries.clone(),
                                timeout: policy.request_timeout(),
                            })?)
                            .clone(),
                    };
                    Backend::Registry(
                        Verifier::new(registry, trust.clone())
                            .map_err(|e| anyhow::anyhow!("scope {}: {e}", scope.name))?,
                    )
                }
            };
            backends.push(backend);
            trusts.push(trust);
        }
        Ok(Engine {
            policy,
            backends,
            trusts,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides whether `reference` (and the `descriptor` a client resolved for it, if any) may
    /// be pulled.
    pub async fn check(&self, reference: &str, descriptor: Option<&Descriptor>) -> Answer {
        self.logged(
            reference,
            descriptor,
            self.decide(reference, descriptor, None),
        )
        .await
    }

    /// Like [`Engine::check`] for an image imported from the OCI layout `archive` (opened once
    /// per import, however many records it names): when the layout carries TUF metadata for
    /// the image's repository, that metadata is used (against the scope's trusted root, no
    /// network), otherwise the scope's usual source.
    pub async fn check_in_archive(
        &self,
        reference: &str,
        descriptor: &Descriptor,
        archive: &tuf_oci::store::LayoutStore,
    ) -> Answer {
        self.logged(
            reference,
            Some(descriptor),
            self.decide(reference, Some(descriptor), Some(archive)),
        )
        .await
    }

    /// Whether a record of `reference` pointing at `descriptor`, made after the name was
    /// verified, still stands: whether the name verifies to it now, as a pull starting now
    /// would (within the refresh interval, from the metadata held).
    pub async fn standing(&self, reference: &str, descriptor: &Descriptor) -> Standing {
        let (index, image) = match self.coverage(reference) {
            Coverage::Protected { index, image, .. } => (index, image),
            Coverage::Decided(answer) if answer.allowed => return Standing::Holds,
            Coverage::Decided(answer) => return Standing::Withdrawn(answer.reason),
        };
        match self
            .verify_in_scope(index, &image, Some(descriptor), None)
            .await
        {
            Ok(_) => Standing::Holds,
            Err(refusal) if refusal.unreachable => Standing::Unknown(refusal.reason),
            Err(refusal) => Standing::Withdrawn(refusal.reason),
        }
    }

    /// The answer for a name that would be given content TUF cannot have signed (`why`):
    /// refused in a protected scope, otherwise what the policy says of the name.
    pub fn check_unverifiable(&self, reference: &str, why: &str) -> Answer {
        match self.coverage(reference) {
            Coverage::Protected { scope, image, .. } => {
                Answer::refuse(Some(scope), format!("tuf-oci: {image}: {why}"))
            }
            Coverage::Decided(answer) => *answer,
        }
    }

    async fn logged(
        &self,
        reference: &str,
        descriptor: Option<&Descriptor>,
        decision: impl Future<Output = Answer>,
    ) -> Answer {
        let start = Instant::now();
        let answer = decision.await;
        tracing::info!(
            reference,
            digest = descriptor.map(|d| d.digest().to_string()),
            allowed = answer.allowed,
            scope = answer.scope.as_deref(),
            role = answer.target.as_ref().map(VerifiedTarget::role),
            elapsed_ms = start.elapsed().as_secs_f64() * 1000.0,
            reason = %answer.reason,
            "verification"
        );
        answer
    }

    /// Updates the top-level metadata of every scope whose metadata location the policy gives,
    /// all at once, so that a service just started does not make its first pulls wait for
    /// cold updates. A failure is logged, not fatal: the first verification tries again.
    async fn warm_up(&self) {
        let scopes = self.policy.scopes.iter().zip(&self.backends);
        let updates = scopes.filter_map(|(scope, backend)| match backend {
            Backend::Registry(verifier) => Some(async move {
                let start = Instant::now();
                match verifier.warm_up().await {
                    Ok(Some(metadata)) => tracing::info!(
                        scope = %scope.name,
                        %metadata,
                        elapsed_ms = start.elapsed().as_secs_f64() * 1000.0,
                        "metadata up to date"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        scope = %scope.name,
                        error = %e,
                        "metadata not updated at start; the first verification tries again"
                    ),
                }
            }),
            Backend::Bundle { .. } => None,
        });
        futures_util::future::join_all(updates).await;
    }

    /// Starts updating, in the background, the top-level metadata of every scope whose metadata
    /// location the policy gives: servers call this as they start serving, and calls arriving
    /// meanwhile wait for it as they would for their own update.
    pub fn spawn_warm_up(self: &std::sync::Arc<Self>) {
        let engine = self.clone();
        tokio::spawn(async move { engine.warm_up().await });
    }

    /// Makes every scope update its metadata on the next verification.
    pub fn refresh(&self) {
        for backend in &self.backends {
            if let Backend::Registry(verifier) = backend {
                verifier.forget_warm_state();
            }
        }
    }

    fn coverage<'a>(&'a self, reference: &'a str) -> Coverage<'a> {
        let (image, decision) = match self.policy.judge(reference) {
            Judged::Reference(image, decision) => (image, decision),
            Judged::Unreadable { error, registry } => {
                return Coverage::Decided(Box::new(Answer::refuse(
                    None,
                    format!(
                        "tuf-oci: {error}; {registry} is a registry the policy protects, so \
                         names on it must be references tuf-oci reads"
                    ),
                )));
            }
            Judged::NoReference(error, default) => {
                return Coverage::Decided(Box::new(match default {
                    Default::Allow => Answer::allow(format!(
                        "tuf-oci: {reference:?} is no registry reference; policy default \
                         allows it"
                    )),
                    Default::Deny => {
                        Answer::refuse(None, format!("tuf-oci: {error}; policy default denies it"))
                    }
                }));
            }
        };
        Coverage::Decided(Box::new(match decision {
            Decision::Verify(index, scope) => {
                return Coverage::Protected {
                    index,
                    scope: &scope.name,
                    image,
                };
            }
            Decision::Unprotected => {
                Answer::allow(format!("tuf-oci: {image} is unprotected by policy"))
            }
            Decision::Uncovered(Default::Allow) => Answer::allow(format!(
                "tuf-oci: no scope covers {image}; policy default allows it"
            )),
            Decision::Uncovered(Default::Deny) => Answer::refuse(
                None,
                format!("tuf-oci: no scope covers {image}; policy default denies it"),
            ),
        }))
    }

    async fn decide(
        &self,
        reference: &str,
        descriptor: Option<&Descriptor>,
        archive: Option<&tuf_oci::store::LayoutStore>,
    ) -> Answer {
        let (index, scope, image) = match self.coverage(reference) {
            Coverage::Protected {
                index,
                scope,
                image,
            } => (index, scope, image),
            Coverage::Decided(answer) => return *answer,
        };
        let name = Some(scope);
        let verified = match self
            .verify_in_scope(index, &image, descriptor, archive)
            .await
        {
            Ok(verified) => verified,
            Err(refusal) => return Answer::refuse(name, refusal.reason),
        };
        Answer {
            allowed: true,
            reason: format!(
                "tuf-oci: {image} verified: {} = {} signed by {}",
                verified.name(),
                verified.digest(),
                verified.role()
            ),
            scope: name.map(str::to_string),
            target: Some(verified),
        }
    }

    /// `image` verified in scope `index` (from `archive` when it carries the scope's metadata
    /// for it), and matched with `descriptor` when one is given.
    async fn verify_in_scope(
        &self,
        index: usize,
        image: &ImageRef,
        descriptor: Option<&Descriptor>,
        archive: Option<&tuf_oci::store::LayoutStore>,
    ) -> Result<VerifiedTarget, ScopeRefusal> {
        let in_archive = match archive {
            Some(layout) if has_metadata_for(layout, image).await => Some(layout),
            _ => None,
        };
        let resolved = match in_archive {
            Some(store) => resolve_in_layout(store, image, &self.trusts[index]).await,
            None => self.backends[index].resolve(image).await,
        };
        let verified = resolved.map_err(|e| ScopeRefusal {
            unreachable: matches!(
                e,
                tuf_oci::Error::Registry { .. }
                    | tuf_oci::Error::ClientSetup { .. }
                    | tuf_oci::Error::Io { .. }
            ),
            reason: format!("tuf-oci: {image}: {e}"),
        })?;
        if let Some(descriptor) = descriptor {
            tuf_oci::check_descriptor(&image.to_string(), &verified, descriptor).map_err(|e| {
                ScopeRefusal {
                    unreachable: false,
                    reason: format!("tuf-oci: {e}"),
                }
            })?;
        }
        Ok(verified)
    }
}

/// Why a reference did not verify in its scope.
struct ScopeRefusal {
    /// One line naming the check that failed.
    reason: String,
    /// Whether the metadata could not be read at all (the registry or the local store), not
    /// found wanting.
    unreachable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(default: &str) -> Engine {
        let policy: Policy = toml::from_str(&format!(
            "default = \"{default}\"\ncache_dir = \"/nonexistent\"\n"
        ))
        .unwrap();
        Engine::new(policy).unwrap()
    }

    #[tokio::test]
    async fn names_without_a_registry_follow_the_default() {
        let allowed = engine("allow").check("localimage:latest", None).await;
        assert!(allowed.allowed, "{}", allowed.reason);
        let refused = engine("deny").check("localimage:latest", None).await;
        assert!(!refused.allowed);
        assert!(
            refused.reason.contains("policy default denies it"),
            "{}",
            refused.reason
        );
    }
}
