//! The TUF client workflow (TUF spec 1.0, section 5) over any [`MetadataSource`]: root chain,
//! timestamp, snapshot, top-level targets, then a lazy delegation search that fetches only the
//! roles on the target's path. Signature checks come from tough's schema; the ordering, rollback,
//! mix-and-match and expiry rules live here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tough::TargetName;
use tough::schema::{Hashes, Metafile, Role, RoleType, Root, Signed, Snapshot, Target, Timestamp};

use crate::descriptor::descriptor_from_target;
use crate::error::{Error, Result};
use crate::layout::{check_role_name, sha256_digest, signed_version, versioned_file};
use crate::location::Repository;
use crate::source::MetadataSource;
use crate::targets_metadata::{Delegation, TargetsMetadata};
use crate::trusted::TrustedStore;

/// Root N+1 while an update stores it: stored before the files its new keys void are forgotten
/// and removed once `root.json` holds it, so that whoever finds it next finishes an update cut
/// short between the two ([`finish_root_update`]); until then, nothing stored beside it is
/// read, and a copy whose root chain stops short of it is a rollback. No role's file has this
/// name: theirs end in `.json`.
pub(crate) const PENDING_ROOT: &str = "root.pending";

/// Download limits (TUF 5.2: "an upper bound on the number of bytes").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest root metadata.
    pub root: u64,
    /// Largest timestamp metadata (its length is not known in advance).
    pub timestamp: u64,
    /// Largest snapshot metadata when timestamp names no length.
    pub snapshot: u64,
    /// Largest targets metadata (top-level or delegated) when snapshot names no length.
    pub targets: u64,
    /// Most root versions followed in one update.
    pub max_root_rotations: u64,
    /// Most delegated roles visited while searching for one target (TUF 5.6.7).
    pub max_delegations: usize,
    /// How far this machine's clock may run ahead of the signers': metadata counts as expired
    /// only this long after its `expires`. Zero (the default) is strict; the tolerance is
    /// explicit because every second of it extends a freeze attack's window.
    pub clock_skew: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root: 512 * 1024,
            timestamp: 16 * 1024,
            snapshot: 16 * 1024 * 1024,
            targets: 32 * 1024 * 1024,
            max_root_rotations: 1024,
            max_delegations: 1024,
            clock_skew: std::time::Duration::ZERO,
        }
    }
}

/// Whether expired metadata is refused. Enforced by default; the bypass exists only so
/// administrators can read expired metadata to replace it, and says so in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiration {
    /// Expired metadata fails verification (freeze-attack protection).
    #[default]
    Enforce,
    /// Expired metadata is accepted. Only for writers re-signing expired roles.
    UnsafeIgnoreForRepair,
}

/// Roles in search order (pre-order, TUF 5.6.7), each taken once: see [`Updater::next_role`].
#[derive(Debug)]
struct SearchOrder {
    /// The delegations still to follow, each as its delegator and its index there (`None`
    /// for top-level targets), the next last.
    stack: Vec<Option<(Arc<TargetsMetadata>, usize)>>,
    /// The roles taken so far.
    visited: HashSet<String>,
}

impl Default for SearchOrder {
    /// Top-level targets first.
    fn default() -> Self {
        SearchOrder {
            stack: vec![None],
            visited: HashSet::new(),
        }
    }
}

impl SearchOrder {
    /// Follows the delegations of `metadata` at `indices` next, in their order.
    fn follow(&mut self, metadata: &Arc<TargetsMetadata>, indices: Vec<usize>) {
        self.stack.extend(
            indices
                .into_iter()
                .rev()
                .map(|index| Some((metadata.clone(), index))),
        );
    }
}

/// A target that passed every TUF check. Only the updater builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedTarget {
    name: String,
    role: String,
    target: Target,
    descriptor: oci_spec::image::Descriptor,
}

impl VerifiedTarget {
    /// The target name, `<repository path>:<tag>`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The role that signs it.
    pub fn role(&self) -> &str {
        &self.role
    }
    /// The TUF target.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The OCI descriptor the target signs.
    pub fn descriptor(&self) -> &oci_spec::image::Descriptor {
        &self.descriptor
    }
    /// `sha256:<hex>` of the signed object.
    pub fn digest(&self) -> String {
        crate::descriptor::target_digest(&self.target)
    }
}

/// The client state: trusted metadata, updated from a source.
#[derive(Debug, Clone)]
pub struct Updater<S> {
    source: S,
    store: TrustedStore,
    limits: Limits,
    expiration: Expiration,
    /// Fixed at the start of the update (TUF 5.1), so a slow update cannot straddle expiry.
    now: jiff::Timestamp,
    root: Signed<Root>,
    root_bytes: Vec<u8>,
    timestamp: Option<Signed<Timestamp>>,
    /// Shared, not copied, by clones made for a search ([`Self::take_roles_from`]): with many
    /// roles it is large.
    snapshot: Option<Arc<Signed<Snapshot>>>,
    /// Targets metadata is shared, not copied, while the delegation tree is searched: with many
    /// delegations it is the largest metadata there is.
    targets: Option<Arc<TargetsMetadata>>,
    delegated: HashMap<String, Arc<TargetsMetadata>>,
    /// While a pull by digest is searched: the delegations whose role could not be had
    /// ([`Delegation::identity`]). The search for each candidate name may meet them again, and
    /// they are not fetched again.
    unavailable: Option<HashSet<String>>,
    /// The digest of each root this updater took from its source (TUF 5.3), by version: what
    /// a copy writes of the chain is what was verified ([`crate::copy`]).
    roots_taken: HashMap<u64, String>,
}

impl<S: MetadataSource> Updater<S> {
    /// Loads trusted metadata from `store`, starting from `bootstrap_root` when the store has
    /// no valid root. Cached metadata that fails its signature check is dropped, not trusted.
    pub fn open(
        source: S,
        store: TrustedStore,
        bootstrap_root: &[u8],
        limits: Limits,
        expiration: Expiration,
    ) -> Result<Self> {
        let bootstrap = (trusted_root(bootstrap_root)?, bootstrap_root.to_vec());
        // Nothing is stored here: the store holds a root only once the chain has gone past
        // the bootstrap root, and storing that one could replace a newer root another
        // updater stored meanwhile.
        let (root, root_bytes) = store
            .load("root.json")?
            .and_then(|bytes| Some((trusted_root(&bytes).ok()?, bytes)))
            .filter(|(cached, _)| cached.signed.version >= bootstrap.0.signed.version)
            .unwrap_or(bootstrap);
        // A root update cut short: its root is trusted, and nothing stored beside it is read
        // until the next update has finished it (what its keys void is still there).
        // Also when it is the bootstrap root: the stored files beside it are older.
        let pending =
            pending_root(&store)?.filter(|(next, _)| next.signed.version >= root.signed.version);
        let cut_short = pending.is_some();
        let (root, root_bytes) = pending.unwrap_or((root, root_bytes));
        let mut updater = Updater {
            source,
            store,
            limits,
            expiration,
            now: jiff::Timestamp::now(),
            root,
            root_bytes,
            timestamp: None,
            snapshot: None,
            targets: None,
            delegated: HashMap::new(),
            unavailable: None,
            roots_taken: HashMap::new(),
        };
        if cut_short {
            return Ok(updater);
        }
        updater.timestamp = updater.load_cached("timestamp")?;
        updater.snapshot = updater.load_cached("snapshot")?.map(Arc::new);
        updater.targets = updater.load_targets()?.map(Arc::new);
        Ok(updater)
    }

    /// Runs the top-level update: root chain, timestamp, snapshot and targets (TUF 5.3–5.5).
    pub async fn refresh(&mut self) -> Result<()> {
        // A root update cut short is finished first (its root is the one held already), so
        // that what it keeps of the stored metadata is read below and compared with, as in
        // any update (TUF 5.4.3.2, 5.5.5).
        if self.store.load(PENDING_ROOT)?.is_some() {
            let _lock = self.store.lock().await?;
            finish_root_update(&self.store)?;
        }
        // Whatever it finds, the update below reads the rest from this one's copy.
        self.catch_up()?;
        let held = self.held_versions();
        let read = self.read_copy().await;
        if self.overtaken(&read, held) {
            self.catch_up()?;
            // Boxed, as the other retries: they are rare, and inline they would double the
            // size of every verification's future.
            return Box::pin(self.read_copy()).await;
        }
        read
    }

    /// The versions of root and timestamp held, to tell afterwards whether the store went past
    /// them meanwhile ([`Self::overtaken`]).
    fn held_versions(&self) -> (u64, u64) {
        let timestamp = self
            .timestamp
            .as_ref()
            .map_or(0, |t| t.signed.version.get());
        (self.root.signed.version.get(), timestamp)
    }

    /// Whether `result` is a rollback met while the store holds a root or timestamp newer than
    /// `held`, what the attempt began from. Mostly another updater sharing the store read a
    /// later state meanwhile (a read made just before a publication met one made just after
    /// it), and reading once more from the newer state settles it. Otherwise (this updater's
    /// own root update, or a store that was ahead of a copy stuck behind it) the one more read
    /// is refused again, as a copy really behind is. A store that cannot be read leaves the
    /// rollback as it is.
    fn overtaken<T>(&self, result: &Result<T>, (root, timestamp): (u64, u64)) -> bool {
        let ahead = |file, held| self.newer_stored(file, held).is_ok_and(|n| n.is_some());
        matches!(result, Err(Error::Rollback { .. }))
            && (ahead("root.json", root) || ahead("timestamp.json", timestamp))
    }

    /// Follows the root chain this updater's copy holds (TUF 5.3), and nothing else: how far
    /// a copy's roots go past the trusted one. A link that fails its checks ends the chain
    /// where it is, with the error.
    pub(crate) async fn follow_roots(&mut self) -> Result<()> {
        let next = self.fetch_next_root().await?;
        self.update_root(next).await
    }

    /// The update proper, reading from this one's copy after [`Self::catch_up`].
    async fn read_copy(&mut self) -> Result<()> {
        self.now = jiff::Timestamp::now();
        // Root N+1 and the timestamp are independent downloads: fetched together they cost one
        // round trip. The timestamp is still checked after the root chain is followed (TUF 5.3
        // before 5.4), with the newest root's keys. A client missing snapshot or top-level
        // targets reads their heads in the same round trip, on the chance that they are the
        // versions the new timestamp names.
        let (next_root, timestamp, snapshot_head, targets_head) = futures_util::join!(
            self.fetch_next_root(),
            self.fetch_timestamp(),
            self.read_head("snapshot", self.snapshot.is_none(), self.limits.snapshot),
            self.read_head("targets", self.targets.is_none(), self.limits.targets),
        );
        self.update_root(next_root?).await?;
        // A root another updater reached first is now held here too: what it stored under that
        // root can now be checked, and is taken up before the copy's timestamp is compared.
        self.catch_up()?;
        self.update_timestamp(timestamp?).await?;
        self.update_snapshot(snapshot_head).await?;
        self.update_targets(targets_head).await
    }

    /// The head of `role` (tag `<role>.json`) when `wanted` and its manifest embeds it. Heads
    /// carry no trust: one is used only if it is byte for byte the version signed metadata
    /// names ([`is_named_by`]), so a head ahead of or behind the published state, or a registry
    /// rewriting it, only costs the download it was read to save.
    async fn read_head(&self, role: &str, wanted: bool, limit: u64) -> Option<Vec<u8>> {
        if !wanted {
            return None;
        }
        let file = format!("{role}.json");
        match self.source.fetch_embedded(&file, limit).await {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(file, error = %e, "head unreadable");
                None
            }
        }
    }

    /// Re-checks the expiry of trusted top-level metadata against the current time, for callers
    /// that reuse an update for a while instead of refreshing on every use.
    pub fn check_unexpired(&mut self) -> Result<()> {
        self.now = jiff::Timestamp::now();
        self.check_expiry("root", self.root.signed.expires)?;
        let timestamp = self.timestamp.as_ref().map(|t| t.signed.expires);
        let snapshot = self.snapshot.as_ref().map(|s| s.signed.expires);
        let targets = self.targets.as_ref().map(|t| t.expires());
        for (role, expires) in [
            ("timestamp", timestamp),
            ("snapshot", snapshot),
            ("targets", targets),
        ] {
            let expires = expires.ok_or_else(|| Error::NotFound {
                what: format!("trusted {role} metadata (refresh first)"),
            })?;
            self.check_expiry(role, expires)?;
        }
        Ok(())
    }

    /// The trusted root.
    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }

    /// The trusted root's bytes as stored.
    pub fn root_bytes(&self) -> &[u8] {
        &self.root_bytes
    }

    /// The trusted timestamp, after a refresh.
    pub fn timestamp(&self) -> Option<&Signed<Timestamp>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot, after a refresh.
    pub fn snapshot(&self) -> Option<&Signed<Snapshot>> {
        self.snapshot.as_deref()
    }

    /// The trusted top-level targets, after a refresh.
    fn top_level(&self) -> Result<Arc<TargetsMetadata>> {
        self.targets.clone().ok_or_else(not_refreshed)
    }

    /// The digests of the roots this updater took from its source, by version.
    pub(crate) fn roots_taken(&self) -> &HashMap<u64, String> {
        &self.roots_taken
    }

    /// The metadata source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Gives the metadata source back.
    pub fn into_source(self) -> S {
        self.source
    }

    /// Finds the target `name` by pre-order depth-first delegation search (TUF 5.6.7), fetching
    /// only delegated roles whose paths cover `name`.
    pub async fn find(&mut self, name: &str, near: Option<&Repository>) -> Result<VerifiedTarget> {
        let (role, target) = self.find_target(name, near).await?;
        verified(name, role, target)
    }

    /// Keeps the delegated roles `searched` verified, a clone of this updater that searched on
    /// its own, for later searches: those at the versions this one's snapshot names.
    pub fn take_roles_from(&mut self, searched: Self) {
        for (role, metadata) in searched.delegated {
            if self
                .snapshot_meta(&role)
                .is_some_and(|meta| metadata.is_named_by(meta))
            {
                self.delegated.insert(role, metadata);
            }
        }
    }

    /// The TUF part of [`Self::find`]: the signing role and the target, whatever it describes.
    pub async fn find_target(
        &mut self,
        name: &str,
        near: Option<&Repository>,
    ) -> Result<(String, Target)> {
        // Left by a pull by digest cut short (its future dropped): each search starts anew.
        self.unavailable = None;
        let held = self.held_versions();
        let found = self.search_target(name, near).await;
        if self.overtaken(&found, held) {
            Box::pin(self.refresh()).await?;
            return Box::pin(self.search_target(name, near)).await;
        }
        found
    }

    /// [`Self::find_target`] on the metadata held.
    async fn search_target(
        &mut self,
        name: &str,
        near: Option<&Repository>,
    ) -> Result<(String, Target)> {
        let target_name = target_name(name)?;
        let mut found = None;
        self.walk(&target_name, near, |role, targets| {
            found = targets.target(name)?.map(|t| (role.to_string(), t));
            Ok(found.is_some())
        })
        .await?;
        found.ok_or_else(|| Error::TargetNotSigned {
            name: name.to_string(),
        })
    }

    /// Finds a trusted target of `repository` whose digest is `digest` (pull by digest). Roles
    /// that could sign names of the repository are searched for candidate names; each candidate
    /// is then confirmed by the ordinary search for that exact name, so delegation order and
    /// path restrictions apply exactly as for a pull by tag.
    /// `signed_path` is the repository path the targets are named with; `near` is where the
    /// image actually is (delegated roles are looked for beside it).
    pub async fn find_digest(
        &mut self,
        signed_path: &str,
        near: Option<&Repository>,
        digest: &str,
    ) -> Result<VerifiedTarget> {
        let held = self.held_versions();
        let found = self.search_digest(signed_path, near, digest).await;
        if self.overtaken(&found, held) {
            Box::pin(self.refresh()).await?;
            return Box::pin(self.search_digest(signed_path, near, digest)).await;
        }
        found
    }

    /// [`Self::find_digest`] on the metadata held. Roles are searched in the order of a
    /// search by name (pre-order, TUF 5.6.7), each fetched when its turn comes, and the search
    /// ends at the first candidate confirmed: roles after it, which a pull by tag would not
    /// reach either, are never fetched, and a broken one cannot fail the pull.
    async fn search_digest(
        &mut self,
        signed_path: &str,
        near: Option<&Repository>,
        digest: &str,
    ) -> Result<VerifiedTarget> {
        self.unavailable = Some(HashSet::new());
        let found = self.search_candidates(signed_path, near, digest).await;
        self.unavailable = None;
        found
    }

    /// [`Self::search_digest`] proper.
    async fn search_candidates(
        &mut self,
        signed_path: &str,
        near: Option<&Repository>,
        digest: &str,
    ) -> Result<VerifiedTarget> {
        let prefix = format!("{signed_path}:");
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        // Roles that could sign names of the repository are followed (path patterns cannot
        // tell tags apart, so terminating ones do not end the search).
        let mut order = SearchOrder::default();
        let searched = format!("{signed_path}@{digest}");
        let mut tried = HashSet::new();
        // A candidate that reaches a target with this digest which is no descriptor, or whose
        // search fails, is what the pull meets, and is reported if no other candidate verifies.
        let mut failure = None;
        while let Some((_, fetched)) = self.next_role(&mut order, &searched, near).await? {
            // A role that cannot be had (expired, missing) may lie on other tags' paths only:
            // passed over, it is met again by the confirming search of any name on its path.
            let metadata = match fetched {
                Ok(metadata) => metadata,
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            };
            let names: Vec<String> = metadata
                .names_with_digest(&prefix, hex)
                .filter(|name| tried.insert(name.to_string()))
                .map(str::to_string)
                .collect();
            // Each candidate is confirmed by the search for its name, so delegation order
            // and path restrictions apply exactly as for a pull by tag; one it does not reach,
            // or reaches with another digest, is passed over.
            for name in names {
                let failed = match self.search_target(&name, near).await {
                    Ok((role, target)) if hex::encode(&target.hashes.sha256) == hex => {
                        match verified(&name, role, target) {
                            Ok(found) => return Ok(found),
                            Err(e) => e,
                        }
                    }
                    Ok(_) | Err(Error::TargetNotSigned { .. }) => continue,
                    Err(e) => e,
                };
                failure.get_or_insert(failed);
            }
            let children: Vec<_> = metadata
                .delegations()
                .iter()
                .enumerate()
                .filter(|(_, child)| child.may_cover_prefix(&prefix))
                .map(|(index, _)| index)
                .collect();
            order.follow(&metadata, children);
        }
        Err(failure.unwrap_or_else(|| Error::DigestNotSigned {
            repository: signed_path.to_string(),
            digest: digest.to_string(),
        }))
    }

    /// Every role reachable from top-level targets, in search order, for listing and
    /// publishing. Fetches every role, so it is for administrators, not for pulls.
    pub async fn all_roles(&mut self) -> Result<Vec<(String, Arc<TargetsMetadata>)>> {
        let mut out = Vec::new();
        let mut stack = vec![("targets".to_string(), self.top_level()?)];
        let mut visited = HashSet::new();
        while let Some((role, metadata)) = stack.pop() {
            if !visited.insert(role.clone()) {
                continue;
            }
            for child in metadata.delegations().iter().rev() {
                if self.snapshot_meta(&child.name).is_some() {
                    let loaded = self.delegated_role(child, None).await?;
                    stack.push((child.name.clone(), loaded));
                }
            }
            out.push((role, metadata));
        }
        Ok(out)
    }

    /// Walks the delegation tree for `name` in TUF 5.6.7 order, calling `visit` on each role's
    /// metadata until it returns true.
    async fn walk(
        &mut self,
        name: &TargetName,
        near: Option<&Repository>,
        mut visit: impl FnMut(&str, &TargetsMetadata) -> Result<bool>,
    ) -> Result<()> {
        // Roles are fetched when their turn comes, so siblings after a match are never
        // downloaded.
        let mut order = SearchOrder::default();
        while let Some((role, fetched)) = self.next_role(&mut order, name.raw(), near).await? {
            let metadata = fetched?;
            if visit(&role, &metadata)? {
                return Ok(());
            }
            let mut children = Vec::new();
            for (index, child) in metadata.delegations().iter().enumerate() {
                if child.covers(name)? {
                    children.push(index);
                    if child.terminating {
                        // Nothing the search has not reached yet is searched after these.
                        order.stack.clear();
                        break;
                    }
                }
            }
            order.follow(&metadata, children);
        }
        Ok(())
    }

    /// The next role of `order` and its metadata as fetched (the error when it cannot be had);
    /// `None` when none is left. Each role is taken once, and no more than
    /// [`Limits::max_delegations`] delegated roles are: past them the search, for `searched`
    /// (a name, or `repository@digest`), fails before fetching.
    async fn next_role(
        &mut self,
        order: &mut SearchOrder,
        searched: &str,
        near: Option<&Repository>,
    ) -> Result<Option<(String, Result<Arc<TargetsMetadata>>)>> {
        while let Some(pending) = order.stack.pop() {
            let delegation = pending
                .as_ref()
                .map(|(parent, index)| &parent.delegations()[*index]);
            let role = delegation.map_or("targets", |d| d.name.as_str());
            if !order.visited.insert(role.to_string()) {
                continue;
            }
            if order.visited.len() > self.limits.max_delegations + 1 {
                return Err(Error::Delegation {
                    target: searched.to_string(),
                    reason: format!("more than {} roles visited", self.limits.max_delegations),
                });
            }
            let role = role.to_string();
            let metadata = match delegation {
                None => self.top_level(),
                Some(delegation)
                    if self
                        .unavailable
                        .as_ref()
                        // Mostly empty: no identity is made then.
                        .is_some_and(|u| !u.is_empty() && u.contains(&delegation.identity())) =>
                {
                    Err(Error::Delegation {
                        target: searched.to_string(),
                        reason: format!("role {role} could not be had earlier in this search"),
                    })
                }
                Some(delegation) => {
                    let fetched = self.delegated_role(delegation, near).await;
                    if let (Err(_), Some(unavailable)) = (&fetched, &mut self.unavailable) {
                        unavailable.insert(delegation.identity());
                    }
                    fetched
                }
            };
            return Ok(Some((role, metadata)));
        }
        Ok(None)
    }

    /// Root N+1 of the trusted root N; none after the last version there can be.
    async fn fetch_next_root(&self) -> Result<Option<Vec<u8>>> {
        match self.root.signed.version.get().checked_add(1) {
            Some(next) => {
                let file = versioned_file("root", next);
                self.source.fetch(&file, None, self.limits.root).await
            }
            None => Ok(None),
        }
    }

    /// TUF 5.3: follow root N+1 until the source has none, each signed by the previous root and
    /// by itself. `next` is root N+1 as already fetched.
    async fn update_root(&mut self, mut next: Option<Vec<u8>>) -> Result<()> {
        let first = self.root.signed.version.get();
        // After the last version there is none to fetch (`next` is `None`): the loop ends at
        // once, and the checks after it still run.
        let start = first.saturating_add(1);
        for version in start..=first.saturating_add(self.limits.max_root_rotations) {
            let file = versioned_file("root", version);
            let fetched = if version == start {
                next.take()
            } else {
                self.source.fetch(&file, None, self.limits.root).await?
            };
            let Some(bytes) = fetched else {
                break;
            };
            let next = successor(&self.root.signed, version, &bytes)?;
            let rotated = |role| self.root.signed.roles.get(&role) != next.signed.roles.get(&role);
            // Fast-forward recovery (TUF 5.3.11): new keys reset the versions we compare with.
            if rotated(RoleType::Timestamp) || rotated(RoleType::Snapshot) {
                self.timestamp = None;
            }
            if rotated(RoleType::Snapshot) {
                self.snapshot = None;
            }
            // Targets held from before is kept only if the new targets keys sign it too: a
            // version still named by snapshot is otherwise never checked again.
            if rotated(RoleType::Targets)
                && self
                    .targets
                    .as_ref()
                    .is_some_and(|held| held.check_signatures("targets", &next.signed).is_err())
            {
                self.targets = None;
            }
            {
                let _lock = self.store.lock().await?;
                finish_root_update(&self.store)?;
                // Another updater may have taken this root, or a newer one, already: it has
                // forgotten what the new keys void, and what it stored since is signed by them
                // and its to keep. The chain goes on; ending short of the stored root is a
                // rollback (below).
                if self
                    .stored_newer("root.json", version - 1, is_root)?
                    .is_none()
                {
                    // The pending root is checked against the stored one when an update cut
                    // short is finished: the store must hold its predecessor.
                    if self
                        .stored_newer("root.json", version - 2, is_root)?
                        .is_none()
                    {
                        self.store.store("root.json", &self.root_bytes)?;
                    }
                    self.store.store(PENDING_ROOT, &bytes)?;
                    forget_voided(&self.store, &self.root.signed, &next.signed)?;
                    self.store.store("root.json", &bytes)?;
                    // Kept by version too: a directory later configured with this root, the
                    // chain gone past it here, starts from this one's state (`verify`).
                    self.store.store(&versioned_file("root", version), &bytes)?;
                    self.store.remove(PENDING_ROOT)?;
                }
            }
            self.roots_taken.insert(version, sha256_digest(&bytes));
            self.root = next;
            self.root_bytes = bytes;
        }
        self.check_root_not_behind()?;
        self.check_expiry("root", self.root.signed.expires)
    }

    /// Takes up what other updaters sharing the store trusted since this one last looked:
    /// updaters reading other copies of the repository (where other images' pointers lead),
    /// or in other processes. Left behind, this one would compare a stale copy with older
    /// versions than the client has seen, and miss the rollback. Only newer files are taken,
    /// each checked with the trusted root.
    ///
    /// Returns whether what this one holds is whole and current with the store. It is not
    /// when the store holds a newer root (another updater followed a key rotation; the chain
    /// is followed from this one's copy, and a copy that lacks the root is a rollback:
    /// [`Self::update_root`]), a newer file the trusted root does not sign, or when timestamp,
    /// snapshot and targets held do not name each other (another updater stored part of an
    /// update). Callers then update before they answer.
    pub fn catch_up(&mut self) -> Result<bool> {
        let (root, timestamp) = self.held_versions();
        // The pending root first: read after `root.json`, an update finishing in between
        // would leave a pending root that follows nothing, and a stored root not seen.
        if pending_root(&self.store)?.is_some() || self.newer_stored("root.json", root)?.is_some() {
            return Ok(false);
        }
        if let Some((_, bytes)) = self.newer_stored("timestamp.json", timestamp)? {
            let Some(timestamp) = self.signed_by_root::<Timestamp>("timestamp", &bytes) else {
                return Ok(false);
            };
            self.timestamp = Some(timestamp);
        }
        // A whole state reads nothing more (top-level targets may be megabytes). Otherwise the
        // stored snapshot and targets are looked at, whether or not the timestamp moved just
        // now: one taken up while another updater was storing its update is followed by that
        // update's snapshot and targets later, and this one would else read its copy anew on
        // every call (failing while that copy cannot be read).
        if self.is_whole() {
            return Ok(true);
        }
        let held = self.snapshot.as_ref().map_or(0, |s| s.signed.version.get());
        if let Some((_, bytes)) = self.newer_stored("snapshot.json", held)? {
            let Some(snapshot) = self.signed_by_root::<Snapshot>("snapshot", &bytes) else {
                return Ok(false);
            };
            self.snapshot = Some(Arc::new(snapshot));
        }
        let held = self.targets.as_ref().map_or(0, |t| t.version().get());
        if let Some(targets) = self
            .newer_stored("targets.json", held)?
            .and_then(|(_, bytes)| {
                TargetsMetadata::verified("targets", &bytes, &self.root.signed).ok()
            })
        {
            self.targets = Some(Arc::new(targets));
        }
        Ok(self.is_whole())
    }

    /// Whether timestamp, snapshot and top-level targets are held, each the version the one
    /// before names.
    fn is_whole(&self) -> bool {
        let (Some(timestamp), Some(snapshot), Some(targets)) =
            (&self.timestamp, &self.snapshot, &self.targets)
        else {
            return false;
        };
        let named_snapshot = snapshot_version(timestamp).map(|meta| meta.version);
        named_snapshot.is_ok_and(|version| version == snapshot.signed.version)
            && self
                .snapshot_meta("targets")
                .is_some_and(|meta| targets.is_named_by(meta))
    }

    /// The `signed.version` and bytes of `file` in the store, when it is above `version`;
    /// nothing is checked but the version (callers check what they take).
    fn newer_stored(&self, file: &str, version: u64) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self.store.load(file)?.and_then(|bytes| {
            signed_version(&bytes)
                .filter(|stored| *stored > version)
                .map(|stored| (stored, bytes))
        }))
    }

    /// Fails with a rollback of the root when the store holds a newer root than this updater
    /// trusts, or a pending one ([`PENDING_ROOT`]) that follows the stored one: another
    /// updater followed the chain further, and a copy that stops short of it is behind.
    fn check_root_not_behind(&self) -> Result<()> {
        let current = self.root.signed.version.get();
        let pending = pending_root(&self.store)?
            .map(|(next, _)| next.signed.version.get())
            .filter(|&pending| pending > current);
        match self
            .stored_newer("root.json", current, is_root)?
            .or(pending)
        {
            Some(stored) => Err(Error::Rollback {
                role: "root".into(),
                trusted: stored,
                fetched: current,
            }),
            None => Ok(()),
        }
    }

    /// Stores `bytes`, version `version` of `role`, unless the store holds a newer version
    /// (one that `signed` accepts) or a newer root: another updater sharing the store (see
    /// [`Self::catch_up`]) trusted it while this one was updating, and storing what this one
    /// read would roll the client back, or put metadata signed by keys the newer root replaced
    /// beside it.
    async fn keep(
        &self,
        role: &str,
        bytes: &[u8],
        version: u64,
        signed: impl FnOnce(&[u8]) -> bool,
    ) -> Result<()> {
        let _lock = self.store.lock().await?;
        finish_root_update(&self.store)?;
        self.check_root_not_behind()?;
        let file = format!("{role}.json");
        if let Some(trusted) = self.stored_newer(&file, version, signed)? {
            return Err(Error::Rollback {
                role: role.to_string(),
                trusted,
                fetched: version,
            });
        }
        self.store.store(&file, bytes)
    }

    /// The version of `file` in the store, when newer than `version` and `signed` accepts it.
    fn stored_newer(
        &self,
        file: &str,
        version: u64,
        signed: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<u64>> {
        Ok(self
            .newer_stored(file, version)?
            .filter(|(_, bytes)| signed(bytes))
            .map(|(stored, _)| stored))
    }

    /// The current timestamp's bytes. The trusted copy, when still current, is not downloaded
    /// again.
    async fn fetch_timestamp(&self) -> Result<Vec<u8>> {
        let limit = self.limits.timestamp;
        let fetched = match self
            .store
            .load("timestamp.json")?
            .filter(|_| self.timestamp.is_some())
        {
            Some(held) => {
                self.source
                    .refetch("timestamp.json", None, limit, &held)
                    .await?
            }
            None => self.source.fetch("timestamp.json", None, limit).await?,
        };
        fetched.ok_or_else(|| Error::NotFound {
            what: "timestamp.json".into(),
        })
    }

    /// TUF 5.4: timestamp, never older than trusted, naming a snapshot never older than trusted.
    async fn update_timestamp(&mut self, bytes: Vec<u8>) -> Result<()> {
        let new: Signed<Timestamp> = parse("timestamp", &bytes)?;
        self.verify_top_level("timestamp", &new)?;
        // Checked before it is kept: a timestamp kept that names no snapshot would stand in
        // the way of every correct one after it.
        let named = snapshot_version(&new)?.version;
        if let Some(trusted) = &self.timestamp {
            check_not_older("timestamp", trusted.signed.version, new.signed.version)?;
            check_not_older("snapshot", snapshot_version(trusted)?.version, named)?;
            if trusted.signed.version == new.signed.version {
                return self.check_expiry("timestamp", trusted.signed.expires);
            }
        }
        self.check_expiry("timestamp", new.signed.expires)?;
        self.keep("timestamp", &bytes, new.signed.version.get(), |stored| {
            self.signed_by_root::<Timestamp>("timestamp", stored)
                .is_some()
        })
        .await?;
        self.timestamp = Some(new);
        Ok(())
    }

    /// TUF 5.5: snapshot as named by timestamp; no role may disappear or go back in version.
    /// `head` is used instead of a download when it has exactly the length and hash timestamp
    /// names.
    async fn update_snapshot(&mut self, head: Option<Vec<u8>>) -> Result<()> {
        let timestamp = self.timestamp.as_ref().expect("timestamp updated first");
        let meta = snapshot_version(timestamp)?.clone();
        let expected = meta.version.get();
        if let Some(trusted) = &self.snapshot
            && trusted.signed.version.get() == expected
        {
            return self.check_expiry("snapshot", trusted.signed.expires);
        }
        let bytes = self
            .head_or_named(head, "snapshot", &meta, "timestamp", self.limits.snapshot)
            .await?;
        let new: Signed<Snapshot> = parse("snapshot", &bytes)?;
        self.verify_top_level("snapshot", &new)?;
        check_version("snapshot", "timestamp", expected, new.signed.version.get())?;
        if let Some(trusted) = &self.snapshot {
            for (file, old) in &trusted.signed.meta {
                let current = new
                    .signed
                    .meta
                    .get(file)
                    .ok_or_else(|| Error::RoleRemoved {
                        role: file.clone(),
                        version: new.signed.version.get(),
                    })?;
                check_not_older(
                    file.strip_suffix(".json").unwrap_or(file),
                    old.version,
                    current.version,
                )?;
            }
        }
        self.check_expiry("snapshot", new.signed.expires)?;
        self.keep("snapshot", &bytes, new.signed.version.get(), |stored| {
            self.signed_by_root::<Snapshot>("snapshot", stored)
                .is_some()
        })
        .await?;
        self.snapshot = Some(Arc::new(new));
        Ok(())
    }

    /// TUF 5.6: top-level targets as named by snapshot; `head` is used instead of a download
    /// when it has exactly the length and hash snapshot names.
    async fn update_targets(&mut self, head: Option<Vec<u8>>) -> Result<()> {
        let meta = self
            .snapshot_meta("targets")
            .cloned()
            .ok_or_else(|| Error::NotInSnapshot {
                role: "targets.json".into(),
            })?;
        if let Some(trusted) = &self.targets
            && trusted.is_named_by(&meta)
        {
            return self.check_expiry("targets", trusted.expires());
        }
        let bytes = self
            .head_or_named(head, "targets", &meta, "snapshot", self.limits.targets)
            .await?;
        let new = TargetsMetadata::verified("targets", &bytes, &self.root.signed)?;
        check_version(
            "targets",
            "snapshot",
            meta.version.get(),
            new.version().get(),
        )?;
        self.check_expiry("targets", new.expires())?;
        self.keep("targets", &bytes, new.version().get(), |stored| {
            TargetsMetadata::verified("targets", stored, &self.root.signed).is_ok()
        })
        .await?;
        self.targets = Some(Arc::new(new));
        Ok(())
    }

    /// A delegated role at the version snapshot names, verified with its delegator's keys.
    async fn delegated_role(
        &mut self,
        delegation: &Delegation,
        near: Option<&Repository>,
    ) -> Result<Arc<TargetsMetadata>> {
        let role = delegation.name.as_str();
        // Checked before anything is read for it: its file could be found by digest, and the
        // role then taken though no file can be named for it.
        check_role_name(role).map_err(|e| Error::InvalidDelegation {
            role: role.to_string(),
            reason: format!("no file can be named for it: {e}"),
        })?;
        let meta = self
            .snapshot_meta(role)
            .cloned()
            .ok_or_else(|| Error::NotInSnapshot {
                role: format!("{role}.json"),
            })?;
        let signers = delegation.signers()?;
        let cached = match self.delegated.get(role) {
            Some(held) => held
                .check_signatures(role, signers)
                .ok()
                .map(|()| held.clone()),
            None => self
                .store
                .load(&format!("{role}.json"))?
                .and_then(|bytes| TargetsMetadata::verified(role, &bytes, signers).ok())
                .map(Arc::new),
        };
        if let Some(cached) = cached.filter(|c| c.is_named_by(&meta)) {
            self.check_expiry(role, cached.expires())?;
            self.delegated.insert(role.to_string(), cached.clone());
            return Ok(cached);
        }
        let bytes = self
            .fetch_named(role, &meta, "snapshot", self.limits.targets, near)
            .await?;
        let new = Arc::new(TargetsMetadata::verified(role, &bytes, signers)?);
        check_version(role, "snapshot", meta.version.get(), new.version().get())?;
        self.check_expiry(role, new.expires())?;
        self.keep(role, &bytes, new.version().get(), |stored| {
            TargetsMetadata::verified(role, stored, signers).is_ok()
        })
        .await?;
        self.delegated.insert(role.to_string(), new.clone());
        Ok(new)
    }

    /// `head` when it is exactly the file of `role` that `meta` names, else that file fetched.
    async fn head_or_named(
        &self,
        head: Option<Vec<u8>>,
        role: &str,
        meta: &Metafile,
        named_by: &str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        match head.filter(|head| is_named_by(head, meta)) {
            Some(head) => Ok(head),
            None => self.fetch_named(role, meta, named_by, limit, None).await,
        }
    }

    /// Fetches `role` at the version (and hash and length, when present) named in `meta`.
    async fn fetch_named(
        &self,
        role: &str,
        meta: &Metafile,
        named_by: &str,
        default_limit: u64,
        near: Option<&Repository>,
    ) -> Result<Vec<u8>> {
        // TUF 5.5.1/5.6.1: version-prefixed names only under consistent snapshots.
        let file = if self.root.signed.consistent_snapshot {
            versioned_file(role, meta.version.get())
        } else {
            format!("{role}.json")
        };
        // A signed length lowers the limit, never raises it: a role larger than the client
        // takes is refused unread, whoever signed its length.
        if let Some(length) = meta.length.filter(|length| *length > default_limit) {
            return Err(Error::TooLarge {
                what: format!("{file} ({length} bytes as signed)"),
                limit: default_limit,
            });
        }
        let limit = meta.length.unwrap_or(default_limit);
        let fetched = match (&meta.hashes, meta.length) {
            (Some(hashes), Some(length)) => {
                let digest = named_digest(hashes);
                self.source
                    .fetch_digest(&file, near, &digest, length)
                    .await?
            }
            _ => self.source.fetch(&file, near, limit).await?,
        };
        let bytes = fetched.ok_or_else(|| Error::NotFound { what: file.clone() })?;
        let length_ok = meta.length.is_none_or(|l| l == bytes.len() as u64);
        let hash_ok = meta.hashes.is_none() || hash_named_by(&bytes, meta);
        if !length_ok || !hash_ok {
            return Err(Error::MetaHashMismatch {
                role: role.to_string(),
                named_by: named_by.to_string(),
            });
        }
        Ok(bytes)
    }

    fn snapshot_meta(&self, role: &str) -> Option<&Metafile> {
        self.snapshot
            .as_ref()?
            .signed
            .meta
            .get(&format!("{role}.json"))
    }

    fn verify_top_level<T: Role + serde::Serialize>(
        &self,
        role: &str,
        signed: &Signed<T>,
    ) -> Result<()> {
        self.root
            .signed
            .verify_role(signed)
            .map_err(|e| Error::Signature {
                role: role.to_string(),
                message: e.to_string(),
            })
    }

    fn check_expiry(&self, role: &str, expires: jiff::Timestamp) -> Result<()> {
        let skew = jiff::SignedDuration::try_from(self.limits.clock_skew)
            .unwrap_or(jiff::SignedDuration::MAX);
        let deadline = expires.checked_add(skew).unwrap_or(jiff::Timestamp::MAX);
        if self.expiration == Expiration::Enforce && deadline <= self.now {
            return Err(Error::Expired {
                role: role.to_string(),
                expires,
            });
        }
        Ok(())
    }

    /// Reads a top-level role from the store, keeping it only if the trusted root signs it.
    fn load_cached<T>(&self, role: &str) -> Result<Option<Signed<T>>>
    where
        T: Role + serde::Serialize + DeserializeOwned,
    {
        let stored = self.store.load(&format!("{role}.json"))?;
        Ok(stored.and_then(|bytes| self.signed_by_root(role, &bytes)))
    }

    /// Top-level targets from the store, if the trusted root signs it.
    fn load_targets(&self) -> Result<Option<TargetsMetadata>> {
        let stored = self.store.load("targets.json")?;
        Ok(stored
            .and_then(|bytes| TargetsMetadata::verified("targets", &bytes, &self.root.signed).ok()))
    }

    /// `bytes` as top-level `role`, if they parse and the trusted root signs them.
    pub(crate) fn signed_by_root<T>(&self, role: &str, bytes: &[u8]) -> Option<Signed<T>>
    where
        T: Role + serde::Serialize + DeserializeOwned,
    {
        let signed: Signed<T> = parse(role, bytes).ok()?;
        self.verify_top_level(role, &signed).ok()?;
        Some(signed)
    }
}

/// `target`, found for `name` in `role`, with the descriptor it signs.
fn verified(name: &str, role: String, target: Target) -> Result<VerifiedTarget> {
    Ok(VerifiedTarget {
        descriptor: descriptor_from_target(name, &target)?,
        name: name.to_string(),
        role,
        target,
    })
}

/// Whether `bytes` are top-level `file` (`timestamp.json`, `snapshot.json`, `targets.json`)
/// signed by `root`'s keys for it.
fn signed_by(root: &Root, file: &str, bytes: &[u8]) -> bool {
    fn verified<T: Role + serde::Serialize + DeserializeOwned>(root: &Root, bytes: &[u8]) -> bool {
        serde_json::from_slice::<Signed<T>>(bytes)
            .is_ok_and(|signed| root.verify_role(&signed).is_ok())
    }
    match file {
        "timestamp.json" => verified::<Timestamp>(root, bytes),
        "snapshot.json" => verified::<Snapshot>(root, bytes),
        "targets.json" => TargetsMetadata::verified("targets", bytes, root).is_ok(),
        _ => false,
    }
}

/// `bytes` as root version `version`, the successor of `current`: signed by a threshold of
/// `current`'s root keys and of its own (TUF 5.3.4, 5.3.5).
fn successor(current: &Root, version: u64, bytes: &[u8]) -> Result<Signed<Root>> {
    let chain = |message: String| Error::RootChain { version, message };
    let next: Signed<Root> =
        parse("root", bytes).map_err(|e| chain(format!("cannot be parsed: {e}")))?;
    current
        .verify_role(&next)
        .map_err(|e| chain(format!("not signed by root version {}: {e}", version - 1)))?;
    next.signed
        .verify_role(&next)
        .map_err(|e| chain(format!("not signed by its own keys: {e}")))?;
    if next.signed.version.get() != version {
        return Err(Error::VersionMismatch {
            role: "root".into(),
            named_by: versioned_file("root", version),
            expected: version,
            fetched: next.signed.version.get(),
        });
    }
    Ok(next)
}

/// The root a root update cut short was storing ([`PENDING_ROOT`]) and its bytes, when it
/// follows the stored root.
fn pending_root(store: &TrustedStore) -> Result<Option<(Signed<Root>, Vec<u8>)>> {
    let Some(bytes) = store.load(PENDING_ROOT)? else {
        return Ok(None);
    };
    Ok(pending_successor(store, &bytes)?.map(|(_, next)| (next, bytes)))
}

/// The stored root and `pending`, when `pending` follows it.
fn pending_successor(
    store: &TrustedStore,
    pending: &[u8],
) -> Result<Option<(Signed<Root>, Signed<Root>)>> {
    let Some(stored) = store.load("root.json")?.and_then(|b| trusted_root(&b).ok()) else {
        return Ok(None);
    };
    let Some(version) = stored.signed.version.get().checked_add(1) else {
        return Ok(None);
    };
    Ok(successor(&stored.signed, version, pending)
        .ok()
        .map(|next| (stored, next)))
}

/// Finishes a root update cut short: the root it was storing, if it follows the stored one,
/// is stored, with what its keys void forgotten first. A leftover that follows nothing
/// stored (the update went through, and only removing it did not) is removed. The caller
/// holds the store's lock.
fn finish_root_update(store: &TrustedStore) -> Result<()> {
    let Some(pending) = store.load(PENDING_ROOT)? else {
        return Ok(());
    };
    if let Some((stored, next)) = pending_successor(store, &pending)? {
        forget_voided(store, &stored.signed, &next.signed)?;
        store.store("root.json", &pending)?;
        store.store(&versioned_file("root", next.signed.version.get()), &pending)?;
    } else if let Ok(root) = trusted_root(&pending)
        && store.load("root.json")?.as_deref() == Some(pending.as_slice())
    {
        // Stored as `root.json` before the process stopped: kept by version too.
        let file = versioned_file("root", root.signed.version.get());
        if store.load(&file)?.is_none() {
            store.store(&file, &pending)?;
        }
    }
    store.remove(PENDING_ROOT)
}

/// Forgets from `store` what the keys of root `next`, following `old`, void (TUF 5.3.11):
/// the timestamp when the timestamp or snapshot keys changed, the snapshot when its keys did,
/// top-level targets when its keys did. Only a file the old keys sign is forgotten, and not
/// when the new keys sign it too: an updater stored it under the new root, or a later one,
/// before a damaged stored root sent this one back to the start of the chain. A timestamp
/// kept beside new snapshot keys must also name the snapshot kept, or it may name a version
/// the old keys inflated.
fn forget_voided(store: &TrustedStore, old: &Root, next: &Root) -> Result<()> {
    let rotated = |role| old.roles.get(&role) != next.roles.get(&role);
    let snapshot = store
        .load("snapshot.json")?
        .filter(|bytes| signed_by(next, "snapshot.json", bytes));
    let voided = [
        (
            "timestamp.json",
            rotated(RoleType::Timestamp) || rotated(RoleType::Snapshot),
        ),
        ("snapshot.json", rotated(RoleType::Snapshot)),
        ("targets.json", rotated(RoleType::Targets)),
    ];
    for (file, _) in voided.into_iter().filter(|(_, voided)| *voided) {
        let kept = store.load(file)?.is_some_and(|bytes| {
            // Signed by neither root, it was stored under a later one (the chain followed
            // again from the start), whose step decides on it; or it is junk, never trusted.
            !signed_by(old, file, &bytes)
                || signed_by(next, file, &bytes)
                    && (file != "timestamp.json"
                        || !rotated(RoleType::Snapshot)
                        || names_snapshot(&bytes, snapshot.as_deref()))
        });
        if !kept {
            store.remove(file)?;
        }
    }
    Ok(())
}

/// Whether `timestamp` names exactly `snapshot` (length and SHA-256).
fn names_snapshot(timestamp: &[u8], snapshot: Option<&[u8]>) -> bool {
    let Ok(timestamp) = parse::<Timestamp>("timestamp", timestamp) else {
        return false;
    };
    snapshot.is_some_and(|snapshot| {
        timestamp
            .signed
            .meta
            .get("snapshot.json")
            .is_some_and(|meta| is_named_by(snapshot, meta))
    })
}

/// Whether `bytes` are a root signed by its own keys (the check the store's root gets).
fn is_root(bytes: &[u8]) -> bool {
    trusted_root(bytes).is_ok()
}

/// The `sha256:<hex>` digest `hashes` (of a snapshot or timestamp entry) names.
pub(crate) fn named_digest(hashes: &Hashes) -> String {
    format!("sha256:{}", hex::encode(&hashes.sha256))
}

/// Whether `meta` names a SHA-256 and `bytes` have it.
fn hash_named_by(bytes: &[u8], meta: &Metafile) -> bool {
    meta.hashes
        .as_ref()
        .is_some_and(|h| sha256_digest(bytes) == named_digest(h))
}

/// Whether `bytes` are exactly the file `meta` names: its length and SHA-256.
pub(crate) fn is_named_by(bytes: &[u8], meta: &Metafile) -> bool {
    meta.length == Some(bytes.len() as u64) && hash_named_by(bytes, meta)
}

/// Top-level targets asked for before any refresh.
fn not_refreshed() -> Error {
    Error::NotFound {
        what: "trusted targets metadata (refresh first)".into(),
    }
}

/// Parses a root that a client is told to trust, checking it is signed by a threshold of its
/// own root keys (TUF 5.2), so a damaged or truncated file fails early and clearly.
pub fn trusted_root(bytes: &[u8]) -> Result<Signed<Root>> {
    let root: Signed<Root> = parse("root", bytes)?;
    root.signed
        .verify_role(&root)
        .map_err(|e| Error::Signature {
            role: "root".into(),
            message: e.to_string(),
        })?;
    Ok(root)
}

fn target_name(name: &str) -> Result<TargetName> {
    TargetName::new(name).map_err(|e| Error::InvalidDescriptor {
        target: name.to_string(),
        reason: e.to_string(),
    })
}

fn snapshot_version(timestamp: &Signed<Timestamp>) -> Result<&Metafile> {
    timestamp
        .signed
        .meta
        .get("snapshot.json")
        .ok_or_else(|| Error::Parse {
            role: "timestamp".into(),
            message: "timestamp names no snapshot.json".into(),
        })
}

fn check_not_older(
    role: &str,
    trusted: std::num::NonZeroU64,
    fetched: std::num::NonZeroU64,
) -> Result<()> {
    if fetched < trusted {
        return Err(Error::Rollback {
            role: role.to_string(),
            trusted: trusted.get(),
            fetched: fetched.get(),
        });
    }
    Ok(())
}

pub(crate) fn check_version(role: &str, named_by: &str, expected: u64, fetched: u64) -> Result<()> {
    if expected != fetched {
        return Err(Error::VersionMismatch {
            role: role.to_string(),
            named_by: named_by.to_string(),
            expected,
            fetched,
        });
    }
    Ok(())
}

/// Parses signed metadata of a role.
pub(crate) fn parse<T: DeserializeOwned>(role: &str, bytes: &[u8]) -> Result<Signed<T>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Parse {
        role: role.to_string(),
        message: e.to_string(),
    })
}
