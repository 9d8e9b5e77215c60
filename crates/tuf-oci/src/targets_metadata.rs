//! Targets metadata (TUF 4.5) the way a client searches it. The `signed` object stays parsed
//! JSON: its signatures are checked by tough's threshold check over its canonical form, and a
//! target or a delegation is decoded only when the search reaches it. Decoding every
//! delegation up front (tough compiles a glob for each path pattern) was most of a cold
//! verification's CPU with 1,000 delegated roles.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use tough::TargetName;
use tough::schema::{Delegations, Metafile, Role, RoleKeys, RoleType, Root, Signed, Target};

use crate::error::{Error, Result};
use crate::grammar;
use crate::layout::{TOP_LEVEL_ROLES, sha256_digest};

/// Targets metadata, top-level or delegated, whose signatures met their threshold. Only
/// `TargetsMetadata::verified`, inside this crate, builds one.
#[derive(Debug)]
pub struct TargetsMetadata {
    signed: Signed<SignedObject>,
    delegations: Vec<Delegation>,
    /// The length and `sha256:<hex>` digest of the file it was read from: a copy held is the
    /// role's only while snapshot names that file ([`Self::is_named_by`]).
    length: u64,
    digest: String,
}

impl TargetsMetadata {
    /// Parses `role`'s metadata and checks it is signed by a threshold of `signers`: the trusted
    /// root for top-level targets, [`Delegation::signers`] for a delegated role. Only what the
    /// search needs first (version, expiry, delegations) is decoded before the signatures are
    /// checked; public for fuzzing those bytes as a registry hands them over.
    pub fn verified(role: &str, bytes: &[u8], signers: &Root) -> Result<Self> {
        let parse = |message: String| Error::Parse {
            role: role.to_string(),
            message,
        };
        let signed: Signed<Value> =
            serde_json::from_slice(bytes).map_err(|e| parse(e.to_string()))?;
        let Value::Object(json) = signed.signed else {
            return Err(parse("`signed` is not an object".into()));
        };
        let header = header(&json).map_err(parse)?;
        let metadata = TargetsMetadata {
            delegations: delegations(&json).map_err(parse)?,
            length: bytes.len() as u64,
            digest: sha256_digest(bytes),
            signed: Signed {
                signed: SignedObject {
                    json,
                    version: header.version,
                    expires: header.expires,
                },
                signatures: signed.signatures,
            },
        };
        metadata.check_signatures(role, signers)?;
        Ok(metadata)
    }

    /// Checks the signatures again, against `signers` as they are now (a delegator may have
    /// rotated the role's keys since this copy was verified).
    pub(crate) fn check_signatures(&self, role: &str, signers: &Root) -> Result<()> {
        signers
            .verify_role(&self.signed)
            .map_err(|e| Error::Signature {
                role: role.to_string(),
                message: e.to_string(),
            })
    }

    /// Whether this is the file `meta` (snapshot's entry for the role) names: its version,
    /// and its length and hash where `meta` gives them (TUF 5.6.2, 5.6.3). A role signed anew
    /// at a version already held is another file, read as a client holding none would.
    pub(crate) fn is_named_by(&self, meta: &Metafile) -> bool {
        self.version() == meta.version
            && meta.length.is_none_or(|length| length == self.length)
            && meta
                .hashes
                .as_ref()
                .is_none_or(|hashes| self.digest == crate::updater::named_digest(hashes))
    }

    /// The metadata's version.
    pub fn version(&self) -> NonZeroU64 {
        self.signed.signed.version
    }

    /// When the metadata expires.
    pub fn expires(&self) -> jiff::Timestamp {
        self.signed.signed.expires
    }

    /// The names of the targets this role signs, in no particular order.
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets().keys().map(String::as_str)
    }

    /// The target `name`, if this role signs it.
    pub fn target(&self, name: &str) -> Result<Option<Target>> {
        self.targets()
            .get(name)
            .map(|json| {
                Target::deserialize(json).map_err(|e| Error::InvalidDescriptor {
                    target: name.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Names `prefix` (`<repository>:`) and a tag whose target's SHA-256 is `hex`:
    /// candidates for a pull by digest, each still to be confirmed by a search for its name.
    /// Only a tag may follow: `team-b/app:x/base:1` is no name of `team-b/app`, and a role
    /// whose patterns cover it (`team-*/base:*`) must not sign `team-b/app`'s content with it.
    pub(crate) fn names_with_digest<'a>(
        &'a self,
        prefix: &'a str,
        hex: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        self.targets()
            .iter()
            .filter(move |(name, target)| {
                name.strip_prefix(prefix)
                    .is_some_and(|tag| grammar::check_tag(tag).is_ok())
                    && target["hashes"]["sha256"]
                        .as_str()
                        .is_some_and(|h| h.eq_ignore_ascii_case(hex))
            })
            .map(|(name, _)| name.as_str())
    }

    /// The roles this one delegates to, in the order they are searched.
    pub(crate) fn delegations(&self) -> &[Delegation] {
        &self.delegations
    }

    fn targets(&self) -> &Map<String, Value> {
        self.signed.signed.json["targets"]
            .as_object()
            .expect("`header` checked that `targets` is an object")
    }
}

/// The fields every targets role has (TUF 4.5), read before anything else.
struct Header {
    version: NonZeroU64,
    expires: jiff::Timestamp,
}

fn header(json: &Map<String, Value>) -> std::result::Result<Header, String> {
    let field = |key: &str| json.get(key).ok_or(format!("`{key}` is missing"));
    let invalid = |key: &'static str| move |e: serde_json::Error| format!("`{key}`: {e}");
    let kind = field("_type")?.as_str();
    if kind != Some("targets") {
        return Err(format!("`_type` is {kind:?}, not \"targets\""));
    }
    if !field("spec_version")?.is_string() {
        return Err("`spec_version` is not a string".into());
    }
    if !field("targets")?.is_object() {
        return Err("`targets` is not an object".into());
    }
    Ok(Header {
        version: NonZeroU64::deserialize(field("version")?).map_err(invalid("version"))?,
        expires: jiff::Timestamp::deserialize(field("expires")?).map_err(invalid("expires"))?,
    })
}

/// The `signed` object as parsed. Serializing it gives back what the signers signed once
/// tough's canonical formatter orders it.
#[derive(Debug)]
struct SignedObject {
    json: Map<String, Value>,
    version: NonZeroU64,
    expires: jiff::Timestamp,
}

impl Serialize for SignedObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

impl Role for SignedObject {
    const TYPE: RoleType = RoleType::Targets;

    fn expires(&self) -> jiff::Timestamp {
        self.expires
    }

    fn version(&self) -> NonZeroU64 {
        self.version
    }

    fn filename(&self, consistent_snapshot: bool) -> String {
        if consistent_snapshot {
            format!("{}.targets.json", self.version)
        } else {
            "targets.json".into()
        }
    }
}

/// One entry of a role's `delegations.roles` (TUF 4.5). Its keys and path patterns are decoded
/// by tough the first time the search needs them; until then only its literal pattern prefixes
/// are read.
#[derive(Debug)]
pub(crate) struct Delegation {
    /// The delegated role's name.
    pub(crate) name: String,
    /// Whether the search stops at this role when it covers the target (TUF 5.6.7.2.1).
    pub(crate) terminating: bool,
    /// The `paths` patterns; `None` for `path_hash_prefixes`.
    patterns: Option<Vec<String>>,
    /// The entry and the delegator's keys it names, as JSON.
    json: Value,
    decoded: OnceLock<Decoded>,
}

/// A delegation as tough reads it: the role with its compiled patterns and its key set.
#[derive(Debug)]
struct Decoded {
    delegations: Delegations,
    signers: Root,
}

/// A `roles` entry, read only as far as the search's pre-filter needs.
#[derive(Deserialize)]
struct Entry {
    name: String,
    terminating: bool,
    paths: Option<Vec<String>>,
    keyids: Vec<String>,
}

fn delegations(json: &Map<String, Value>) -> std::result::Result<Vec<Delegation>, String> {
    let Some(delegations) = json.get("delegations") else {
        return Ok(Vec::new());
    };
    let keys = delegations["keys"]
        .as_object()
        .ok_or("delegations.keys is missing or not an object")?;
    let roles = delegations["roles"]
        .as_array()
        .ok_or("delegations.roles is missing or not an array")?;
    // Key IDs are hex, compared by value as tough does.
    let keys: HashMap<String, (&String, &Value)> = keys
        .iter()
        .map(|(keyid, key)| (keyid.to_ascii_lowercase(), (keyid, key)))
        .collect();
    roles
        .iter()
        .map(|role| {
            let entry = Entry::deserialize(role).map_err(|e| format!("delegations.roles: {e}"))?;
            // Role names are unique across the repository, and trusted metadata is kept under
            // them: a delegated `root` (or `Root`, on a file system that ignores case) would
            // take the trusted root's place.
            if TOP_LEVEL_ROLES
                .iter()
                .any(|top| top.eq_ignore_ascii_case(&entry.name))
            {
                return Err(format!(
                    "delegations.roles: a delegated role may not be named {:?}, a top-level role",
                    entry.name
                ));
            }
            let keys: Map<String, Value> = entry
                .keyids
                .iter()
                .filter_map(|keyid| keys.get(&keyid.to_ascii_lowercase()))
                .map(|(keyid, key)| ((*keyid).clone(), (*key).clone()))
                .collect();
            Ok(Delegation {
                name: entry.name,
                terminating: entry.terminating,
                patterns: entry.paths,
                json: serde_json::json!({ "keys": keys, "roles": [role] }),
                decoded: OnceLock::new(),
            })
        })
        .collect()
}

impl Delegation {
    /// Whether this delegation covers `name` (TUF 5.6.7.2), by tough's matcher. Patterns whose
    /// literal start cannot begin `name` are ruled out without compiling them.
    pub(crate) fn covers(&self, name: &TargetName) -> Result<bool> {
        if let Some(patterns) = &self.patterns
            && !patterns.iter().any(|p| may_match(p, name.resolved()))
        {
            return Ok(false);
        }
        Ok(self.decoded()?.delegations.target_is_delegated(name))
    }

    /// Whether this delegation could cover some name starting with `prefix` (`<repo>:`). Hash
    /// prefixes cannot be told apart, so they always may.
    pub(crate) fn may_cover_prefix(&self, prefix: &str) -> bool {
        self.patterns.as_ref().is_none_or(|patterns| {
            patterns.iter().any(|p| {
                let literal = literal_start(p);
                prefix.starts_with(literal) || literal.starts_with(prefix)
            })
        })
    }

    /// This delegation, told apart from others to the same role: what its metadata is
    /// checked with (its entry and the delegator's keys it names) is part of it.
    pub(crate) fn identity(&self) -> String {
        self.json.to_string()
    }

    /// The keys and threshold the delegated role's metadata must be signed with, as a key set
    /// tough's threshold check takes (duplicate keyids and unknown keys count as in tough).
    pub(crate) fn signers(&self) -> Result<&Root> {
        Ok(&self.decoded()?.signers)
    }

    fn decoded(&self) -> Result<&Decoded> {
        if let Some(decoded) = self.decoded.get() {
            return Ok(decoded);
        }
        let delegations =
            Delegations::deserialize(&self.json).map_err(|e| Error::InvalidDelegation {
                role: self.name.clone(),
                reason: format!("its delegation cannot be parsed: {e}"),
            })?;
        let role = &delegations.roles[0];
        let signers = Root {
            spec_version: String::new(),
            consistent_snapshot: false,
            version: NonZeroU64::MIN,
            expires: jiff::Timestamp::MAX,
            keys: delegations.keys.clone(),
            roles: HashMap::from([(
                RoleType::Targets,
                RoleKeys {
                    keyids: role.keyids.clone(),
                    threshold: role.threshold,
                    _extra: HashMap::new(),
                },
            )]),
            _extra: HashMap::new(),
        };
        Ok(self.decoded.get_or_init(|| Decoded {
            delegations,
            signers,
        }))
    }
}

/// Whether a glob `pattern` could match `name` at all: whatever it matches begins with its
/// literal start.
fn may_match(pattern: &str, name: &str) -> bool {
    let literal = literal_start(pattern);
    name.starts_with(literal)
}

/// The part of a glob pattern before its first special character.
fn literal_start(pattern: &str) -> &str {
    &pattern[..pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len())]
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use tough::editor::signed::SignedRole;
    use tough::schema::{
        DelegatedRole, DelegatedTargets, KeyHolder, PathPattern, PathSet, Targets,
    };

    use super::*;
    use crate::keys::{SigningKey, generate};

    const PATTERNS: &[&str] = &[
        "",
        "*",
        "**",
        "a/**",
        "a/**/b",
        "**/b",
        "a/*",
        "a/b",
        "a/[bc]",
        "a/{b,c}*",
        "a\\*",
        "team-1/*",
        "team-1/app:v?",
        "team-10/*",
        "app:*",
        "team/**",
        "x/**/y/*",
    ];
    const NAMES: &[&str] = &[
        "a",
        "a/",
        "a/b",
        "a/c",
        "a/x/b",
        "a*",
        "b",
        "x/b",
        "team-1/app:v1",
        "team-10/app:v1",
        "team-2/app:v1",
        "app:v1",
        "team",
        "team/x/y",
        "x/y/z",
        "x/q/y/z",
    ];

    #[test]
    fn prefilter_never_rules_out_what_tough_matches() {
        let mut ruled_out = 0;
        for pattern in PATTERNS {
            let role = Delegations {
                keys: HashMap::new(),
                roles: vec![delegated_role("r", &[pattern], &[])],
            };
            for name in NAMES {
                let name = TargetName::new(*name).unwrap();
                let matches = role.target_is_delegated(&name);
                let may = may_match(pattern, name.resolved());
                assert!(may || !matches, "{pattern:?} matches {name:?}, ruled out");
                ruled_out += usize::from(!may);
            }
        }
        // The filter must also do its job: most of these pairs are told apart without a glob.
        assert!(ruled_out > PATTERNS.len() * NAMES.len() / 3, "{ruled_out}");
        assert!(!may_match("team-1/*", "team-2/app:v1"));
    }

    #[tokio::test]
    async fn delegated_role_is_checked_with_its_delegators_keys_and_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let team = key(&dir, "team").await;
        let other = key(&dir, "other").await;
        let mut top = Targets::new("1.0.0".into(), NonZeroU64::MIN, jiff::Timestamp::MAX);
        top.delegations = Some(Delegations {
            keys: [&team, &other]
                .map(|k| (k.public().key_id().unwrap(), k.public().clone()))
                .into(),
            roles: vec![
                delegated_role("other", &["team-2/*"], &[&other]),
                delegated_role("team-1", &["team-1/*"], &[&team]),
            ],
        });
        let root_key = key(&dir, "targets").await;
        let root = root_trusting(&root_key);
        let top = sign(top, &KeyHolder::Root(root.clone()), &root_key).await;
        let top = TargetsMetadata::verified("targets", &top, &root).unwrap();

        let name = TargetName::new("team-1/app:v1").unwrap();
        let [other_role, team_role] = top.delegations() else {
            panic!("two delegations")
        };
        assert!(!other_role.covers(&name).unwrap());
        assert!(team_role.covers(&name).unwrap());
        // `other` never got past the pre-filter, so its patterns were never compiled.
        assert!(other_role.decoded.get().is_none());

        let mut role = Targets::new("1.0.0".into(), NonZeroU64::MIN, jiff::Timestamp::MAX);
        role.targets.insert(name.clone(), target());
        let holder = KeyHolder::Delegations(top_delegations(&top));
        let delegated = DelegatedTargets {
            name: "team-1".into(),
            targets: role.clone(),
        };
        let signed = sign(delegated.clone(), &holder, &team).await;
        let team_1 = TargetsMetadata::verified("team-1", &signed, team_role.signers().unwrap())
            .expect("signed by team-1's key");
        assert_eq!(team_1.target("team-1/app:v1").unwrap(), Some(target()));
        assert_eq!(team_1.target("team-1/app:v2").unwrap(), None);

        // Another delegated key, trusted by the same delegator, does not sign team-1.
        let holder = KeyHolder::Delegations(Delegations {
            keys: HashMap::from([(other.public().key_id().unwrap(), other.public().clone())]),
            roles: vec![delegated_role("team-1", &["team-1/*"], &[&other])],
        });
        let forged = sign(delegated, &holder, &other).await;
        let refused = TargetsMetadata::verified("team-1", &forged, team_role.signers().unwrap());
        assert!(
            matches!(&refused, Err(Error::Signature { role, .. }) if role == "team-1"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn delegated_roles_named_like_top_level_roles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root_key = key(&dir, "targets").await;
        let root = root_trusting(&root_key);
        for name in [
            "root",
            "timestamp",
            "snapshot",
            "targets",
            "Root",
            "TIMESTAMP",
        ] {
            let mut top = Targets::new("1.0.0".into(), NonZeroU64::MIN, jiff::Timestamp::MAX);
            top.delegations = Some(Delegations {
                keys: HashMap::new(),
                roles: vec![delegated_role(name, &["team-1/*"], &[])],
            });
            let bytes = sign(top, &KeyHolder::Root(root.clone()), &root_key).await;
            let refused = TargetsMetadata::verified("targets", &bytes, &root);
            assert!(
                matches!(&refused, Err(Error::Parse { message, .. }) if message.contains(name)),
                "{refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn changed_or_mistyped_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root_key = key(&dir, "targets").await;
        let root = root_trusting(&root_key);
        let mut top = Targets::new("1.0.0".into(), NonZeroU64::MIN, jiff::Timestamp::MAX);
        top.targets
            .insert(TargetName::new("team-1/app:v1").unwrap(), target());
        let bytes = sign(top, &KeyHolder::Root(root.clone()), &root_key).await;
        TargetsMetadata::verified("targets", &bytes, &root).expect("as signed");

        let edited = |edit: fn(&mut Value)| {
            let mut json: Value = serde_json::from_slice(&bytes).unwrap();
            edit(&mut json["signed"]);
            serde_json::to_vec(&json).unwrap()
        };
        let changed = edited(|signed| signed["targets"]["team-1/app:v1"]["length"] = 4.into());
        let refused = TargetsMetadata::verified("targets", &changed, &root);
        assert!(
            matches!(refused, Err(Error::Signature { .. })),
            "{refused:?}"
        );

        let retyped = edited(|signed| signed["_type"] = "snapshot".into());
        let refused = TargetsMetadata::verified("targets", &retyped, &root);
        assert!(
            matches!(&refused, Err(Error::Parse { message, .. }) if message.contains("_type")),
            "{refused:?}"
        );
    }

    async fn key(dir: &tempfile::TempDir, name: &str) -> SigningKey {
        generate(&dir.path().join(name)).unwrap();
        SigningKey::load(&dir.path().join(name)).await.unwrap()
    }

    fn root_trusting(key: &SigningKey) -> Root {
        let keyid = key.public().key_id().unwrap();
        Root {
            spec_version: "1.0.0".into(),
            consistent_snapshot: true,
            version: NonZeroU64::MIN,
            expires: jiff::Timestamp::MAX,
            keys: HashMap::from([(keyid.clone(), key.public().clone())]),
            roles: HashMap::from([(
                RoleType::Targets,
                RoleKeys {
                    keyids: vec![keyid],
                    threshold: NonZeroU64::MIN,
                    _extra: HashMap::new(),
                },
            )]),
            _extra: HashMap::new(),
        }
    }

    fn delegated_role(name: &str, patterns: &[&str], keys: &[&SigningKey]) -> DelegatedRole {
        DelegatedRole {
            name: name.into(),
            keyids: keys.iter().map(|k| k.public().key_id().unwrap()).collect(),
            threshold: NonZeroU64::MIN,
            paths: PathSet::Paths(
                patterns
                    .iter()
                    .map(|p| PathPattern::new(*p).unwrap())
                    .collect(),
            ),
            terminating: false,
            targets: None,
        }
    }

    /// The delegations of verified top-level metadata, decoded whole, as a signer has them.
    fn top_delegations(top: &TargetsMetadata) -> Delegations {
        Delegations::deserialize(&top.signed.signed.json["delegations"]).unwrap()
    }

    fn target() -> Target {
        serde_json::from_value(serde_json::json!({
            "length": 3,
            "hashes": {"sha256": "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"},
            "custom": {"mediaType": "application/vnd.oci.image.manifest.v1+json"}
        }))
        .unwrap()
    }

    /// The file a signer writes for `role`.
    async fn sign<T: Role + Serialize + Clone>(
        role: T,
        holder: &KeyHolder,
        key: &SigningKey,
    ) -> Vec<u8> {
        let signed = SignedRole::new(role, holder, &[key.source()], &SystemRandom::new())
            .await
            .unwrap();
        signed.buffer().clone()
    }
}
