//! Claims: how writers of one role version find out about each other on a registry without
//! compare-and-swap (distribution ignores `If-Match`).
//!
//! Before storing version file `N.<role>.json`, a writer tags its manifest
//! `tuf-claim-<hash of the file name>-<unix seconds>-<nonce>`, lists the repository's tags, and
//! goes ahead only if no other fresh claim on the same file is active. Of two writers, the
//! second to claim sees the first's claim; if they claim at once, both see each other and both
//! step back. A writer that steps back withdraws its claim by re-tagging it to an empty index.
//! Claims older than [`WINDOW`] are ignored, so a crashed writer blocks a version for at most
//! that long; a writer that took half of it between claiming and storing gives up instead.
//! Writers of timestamp version N claim `N.timestamp.json` though only the head is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::layout::{INDEX_MEDIA_TYPE, Manifest, index, sha256_digest};
use crate::location::Repository;
use crate::registry::Registry;

/// How long a claim counts. Signers' clocks must agree to well within it.
pub const WINDOW: Duration = Duration::from_secs(300);

/// Every claim tag starts so.
const PREFIX: &str = "tuf-claim-";

/// The annotation marking a withdrawn claim.
const WITHDRAWN: &str = "tuf.io/claim-withdrawn";

/// The annotation marking a claim withdrawn before its writer wrote anything under it.
const NOTHING_WRITTEN: &str = "tuf.io/claim-nothing-written";

/// Largest claim manifest read (a claim is one small manifest).
const CLAIM_READ_LIMIT: u64 = 64 * 1024;

/// Whether `tag` is a claim (coordination between writers, not metadata to copy).
pub fn is_claim_tag(tag: &str) -> bool {
    tag.starts_with(PREFIX)
}

/// The first of `tags` (listed in `repository`) that is a claim on version file `file` whose
/// writer may have written under it, however old: all but those withdrawn before anything was
/// written ([`Withdrawal::NothingWritten`]). A claim that cannot be read counts.
pub async fn may_have_written(
    registry: &Registry,
    repository: &Repository,
    file: &str,
    tags: &[String],
) -> Result<Option<String>> {
    let prefix = file_prefix(file);
    for tag in tags.iter().filter(|tag| tag.starts_with(&prefix)) {
        if withdrawn(registry, repository, tag).await != Some(Withdrawal::NothingWritten) {
            return Ok(Some(tag.clone()));
        }
    }
    Ok(None)
}

/// How claim `tag` in `repository` was withdrawn, or `None` while it is active. A claim that
/// cannot be read is being written (distribution serves a tag being stored as an error): it
/// is active. So is one listed but not found (a registry whose listing runs ahead of its
/// reads): claims are withdrawn, never removed.
async fn withdrawn(registry: &Registry, repository: &Repository, tag: &str) -> Option<Withdrawal> {
    let stored = registry
        .manifest(&repository.tagged(tag), CLAIM_READ_LIMIT)
        .await
        .ok()
        .flatten()
        .filter(|stored| stored.media_type == INDEX_MEDIA_TYPE)?;
    let nothing_written = Manifest::parse(tag, &stored.bytes)
        .is_ok_and(|index| index.annotations.contains_key(NOTHING_WRITTEN));
    Some(if nothing_written {
        Withdrawal::NothingWritten
    } else {
        Withdrawal::MayHaveWritten
    })
}

/// What a writer withdrawing its claim had done under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// Nothing: it stepped back before writing the file (another writer's claim, a check
    /// that failed, too long to claim).
    NothingWritten,
    /// It wrote the file, or may have (a write that failed may still have landed).
    MayHaveWritten,
}

/// One writer's claim on one version file.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The claim's tag.
    pub tag: String,
    file: String,
    /// When it was made, as its tag says (what other writers compare theirs with).
    at: jiff::Timestamp,
    /// When it was made, by a clock that never steps back: how long this writer has held it.
    made: tokio::time::Instant,
}

impl Claim {
    /// A new claim on version file `file`, made now.
    pub fn new(file: &str) -> Result<Self> {
        Claim::made_at(file, jiff::Timestamp::now())
    }

    /// A claim on `file` dated `at` (what a writer whose clock says `at` makes).
    pub fn made_at(file: &str, at: jiff::Timestamp) -> Result<Self> {
        let mut nonce = [0; 4];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Usage("no system randomness for a claim".into()))?;
        Ok(Claim {
            tag: format!(
                "{}{}-{}",
                file_prefix(file),
                at.as_second(),
                hex::encode(nonce)
            ),
            file: file.to_string(),
            at,
            made: tokio::time::Instant::now(),
        })
    }

    /// The first other active claim on the same file within [`WINDOW`] of this one.
    pub async fn rival(
        &self,
        registry: &Registry,
        repository: &Repository,
    ) -> Result<Option<String>> {
        let prefix = file_prefix(&self.file);
        let window = WINDOW.as_secs() as i64;
        let fresh: Vec<String> = registry
            .tags(repository)
            .await?
            .into_iter()
            .filter(|tag| *tag != self.tag)
            .filter(|tag| {
                claimed_at(tag, &prefix)
                    .is_some_and(|at| (at - self.at.as_second()).abs() <= window)
            })
            .collect();
        for tag in fresh {
            if withdrawn(registry, repository, &tag).await.is_none() {
                return Ok(Some(tag));
            }
        }
        Ok(None)
    }

    /// Whether so much time has passed since claiming that others may soon no longer see the
    /// claim: half of [`WINDOW`], leaving the other half for the write to land before another
    /// writer could claim the version over it.
    pub fn is_late(&self) -> bool {
        self.made.elapsed() >= WINDOW / 2
    }

    /// Whether the claim has lapsed: another writer may have claimed and stored the version
    /// meanwhile, so what this one stored and read back may have been written over since.
    pub fn has_lapsed(&self) -> bool {
        self.made.elapsed() >= WINDOW
    }

    /// Steps back: the claim's tag moves to an empty index, saying whether anything was
    /// written under it.
    pub async fn withdraw(
        &self,
        registry: &Registry,
        repository: &Repository,
        withdrawal: Withdrawal,
    ) -> Result<()> {
        let mut annotations = BTreeMap::from([(WITHDRAWN.to_string(), self.file.clone())]);
        if withdrawal == Withdrawal::NothingWritten {
            annotations.insert(NOTHING_WRITTEN.to_string(), "true".to_string());
        }
        registry
            .push_manifest(
                &repository.tagged(&self.tag),
                &index(&[], &annotations),
                INDEX_MEDIA_TYPE,
            )
            .await?;
        Ok(())
    }
}

/// `tuf-claim-<16 hex of the file name's digest>-`: fixed length whatever the role name.
fn file_prefix(file: &str) -> String {
    let digest = sha256_digest(file.as_bytes());
    format!("{PREFIX}{}-", &digest["sha256:".len()..][..16])
}

/// When a claim on the file with `prefix` was made, from its tag.
fn claimed_at(tag: &str, prefix: &str) -> Option<i64> {
    let (seconds, _nonce) = tag.strip_prefix(prefix)?.split_once('-')?;
    seconds.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_tags_name_file_and_time_and_are_valid_tags() {
        let long_role = "r".repeat(64);
        let claim = Claim::new(&format!("123.{long_role}.json")).unwrap();
        assert!(is_claim_tag(&claim.tag));
        assert!(claim.tag.len() <= 128);
        assert!(
            claim
                .tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
        let prefix = file_prefix(&claim.file);
        assert_eq!(claimed_at(&claim.tag, &prefix), Some(claim.at.as_second()));
        assert_eq!(claimed_at(&claim.tag, &file_prefix("124.r.json")), None);
        let other = Claim::new(&claim.file).unwrap();
        assert_ne!(other.tag, claim.tag, "nonces tell claims apart");
        assert!(!claim.is_late());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_held_too_long_is_late_then_lapsed_whatever_the_wall_clock_says() {
        // Dated a day ahead (a clock stepped back since): only the time held counts.
        let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let claim = Claim::made_at("3.team-a.json", ahead).unwrap();
        assert!(!claim.is_late() && !claim.has_lapsed());
        tokio::time::advance(WINDOW / 2).await;
        assert!(claim.is_late() && !claim.has_lapsed());
        tokio::time::advance(WINDOW / 2).await;
        assert!(claim.has_lapsed());
    }
}
