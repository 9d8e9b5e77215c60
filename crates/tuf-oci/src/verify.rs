//! Verifying an image reference end to end: find its metadata repository, update TUF metadata,
//! resolve the tag (or digest) through TUF, and check that the registry serves exactly the signed
//! descriptor. The registry's tag is never trusted on its own.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::location::{ImageRef, Repository};
use crate::registry::Registry;
use crate::source::{RegistrySource, metadata_repository};
use crate::trusted::TrustedStore;
use crate::updater::{Expiration, Limits, Updater, VerifiedTarget, trusted_root};

/// Largest image manifest or index read to compare with its signed descriptor.
const IMAGE_MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// What a client trusts: the root and, optionally, where metadata lives (bootstrap, TUF 5.2).
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// The trusted root metadata (any version; newer ones are reached through the root chain).
    pub root: Vec<u8>,
    /// Metadata repository to use instead of following `tuf-metadata` pointers (mirrors,
    /// air-gapped copies, or distrust of pointers).
    pub metadata_override: Option<Repository>,
    /// Directory for trusted metadata, one subdirectory per metadata repository. Without one,
    /// rollback protection lasts only as long as the process.
    pub cache_dir: Option<PathBuf>,
    /// Download limits.
    pub limits: Limits,
}

/// Verifies image references against TUF metadata in registries.
#[derive(Debug, Clone)]
pub struct Verifier {
    registry: Registry,
    trust: TrustConfig,
}

impl Verifier {
    /// A verifier reading through `registry` and trusting `trust`.
    pub fn new(registry: Registry, trust: TrustConfig) -> Self {
        Verifier { registry, trust }
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metadata repository for images in `repository`.
    pub async fn metadata_repository(&self, repository: &Repository) -> Result<Repository> {
        match &self.trust.metadata_override {
            Some(location) => Ok(location.clone()),
            None => metadata_repository(&self.registry, repository).await,
        }
    }

    /// An updater for the metadata repository of `repository`, refreshed (TUF 5.3–5.6).
    pub async fn updater(
        &self,
        repository: &Repository,
        expiration: Expiration,
    ) -> Result<Updater<RegistrySource>> {
        trusted_root(&self.trust.root)?;
        let metadata = self.metadata_repository(repository).await?;
        let store = match &self.trust.cache_dir {
            Some(dir) => TrustedStore::at(dir.join(cache_key(&metadata))),
            None => TrustedStore::in_memory(),
        };
        let source = RegistrySource::new(self.registry.clone(), metadata);
        let mut updater = Updater::open(
            source,
            store,
            &self.trust.root,
            self.trust.limits,
            expiration,
        )?;
        updater.refresh().await?;
        Ok(updater)
    }

    /// Verifies `image` and returns the signed descriptor it resolves to.
    pub async fn verify(&self, image: &ImageRef) -> Result<VerifiedTarget> {
        let repository = &image.repository;
        let mut updater = self.updater(repository, Expiration::Enforce).await?;
        let verified = match image.target_name() {
            Some(name) => updater.find(&name, Some(repository)).await?,
            None => {
                let digest = image
                    .digest
                    .as_deref()
                    .expect("a reference without tag has a digest");
                updater.find_digest(repository, digest).await?
            }
        };
        if let Some(digest) = &image.digest
            && *digest != verified.digest()
        {
            return Err(Error::DigestNotSigned {
                repository: repository.path.clone(),
                digest: digest.clone(),
            });
        }
        self.check_registry(image, &verified).await?;
        Ok(verified)
    }

    /// Checks that the registry serves the signed object: the tag (when given) points at the
    /// signed digest, and the manifest at that digest has the signed size and media type.
    async fn check_registry(&self, image: &ImageRef, verified: &VerifiedTarget) -> Result<()> {
        let signed_digest = verified.digest();
        let reference = match &image.tag {
            Some(tag) => image.repository.tagged(tag),
            None => image.repository.digested(&signed_digest),
        };
        let served = self
            .registry
            .manifest(
                &reference,
                IMAGE_MANIFEST_LIMIT.max(verified.target().length),
            )
            .await?
            .ok_or_else(|| Error::NotFound {
                what: reference.whole(),
            })?;
        let mismatch = |field, signed: String, registry: String| Error::RegistryMismatch {
            reference: image.to_string(),
            field,
            signed,
            registry,
        };
        if served.digest != signed_digest {
            return Err(mismatch("digest", signed_digest, served.digest));
        }
        let size = served.bytes.len() as u64;
        if size != verified.target().length {
            return Err(mismatch(
                "size",
                verified.target().length.to_string(),
                size.to_string(),
            ));
        }
        let signed_type = verified.descriptor().media_type().to_string();
        if served.media_type != signed_type {
            return Err(mismatch("mediaType", signed_type, served.media_type));
        }
        Ok(())
    }
}

/// A directory name for a metadata repository's trusted metadata.
fn cache_key(repository: &Repository) -> String {
    repository
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
