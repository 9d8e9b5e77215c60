//! Signing keys on disk: `NAME.key` holds an Ed25519 (or ECDSA/RSA) private key in PKCS#8, the
//! format tough's `LocalKeySource` reads; `NAME.pub` holds the TUF public key JSON that goes into
//! root or delegation metadata.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use std::sync::Arc;

use tough::key_source::KeySource;
use tough::schema::key::Key;
use tough::sign::Sign;

use crate::error::{Error, Result};

/// A private key read into memory, and the key source tough signs with. Holding the bytes (not
/// the path) keeps a loaded key usable after its file is moved away, as rotation does.
#[derive(Clone)]
pub struct SigningKey {
    path: PathBuf,
    pkcs8: Arc<Vec<u8>>,
    public: Key,
}

/// Names the key's file, never its private bytes (errors and logs print keys).
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the private key at `path` (or `path.key`).
    pub async fn load(path: &Path) -> Result<Self> {
        let path = with_extension(path, "key");
        let pkcs8 = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let signer = tough::sign::parse_keypair(&pkcs8).map_err(|e| Error::Key {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(SigningKey {
            public: signer.tuf_key(),
            pkcs8: Arc::new(pkcs8),
            path,
        })
    }

    /// The public half, as it appears in metadata.
    pub fn public(&self) -> &Key {
        &self.public
    }

    /// The key id (TUF 4.2: sha256 of the canonical public key).
    pub fn key_id(&self) -> Result<String> {
        key_id(&self.public, &self.path)
    }

    /// A key source for tough's signing.
    pub fn source(&self) -> Box<dyn KeySource> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl KeySource for SigningKey {
    async fn as_sign(
        &self,
    ) -> std::result::Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>>
    {
        Ok(Box::new(tough::sign::parse_keypair(&self.pkcs8)?))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("signing keys are never written back".into())
    }
}

/// Creates a new Ed25519 key pair as `stem.key` (owner-only) and `stem.pub`.
pub fn generate(stem: &Path) -> Result<Key> {
    let key_path = with_extension(stem, "key");
    let pub_path = with_extension(stem, "pub");
    let error = |message: String| Error::Key {
        path: key_path.clone(),
        message,
    };
    // Either file may be a key somebody handed over (a team's public key beside the
    // administrator's keys): neither is replaced.
    for path in [&key_path, &pub_path] {
        if path.exists() {
            return Err(Error::Key {
                path: path.clone(),
                message: "already exists; refusing to overwrite a key".into(),
            });
        }
    }
    let document = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| error("key generation failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(document.as_ref())
        .map_err(|e| error(e.to_string()))?;
    let public = pair.tuf_key();
    if let Some(parent) = key_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    write_new(&key_path, document.as_ref(), 0o600)?;
    let json = serde_json::to_vec_pretty(&public).expect("keys serialize");
    if let Err(e) = write_new(&pub_path, &json, 0o644) {
        // A private key without its public half would only stop the next try.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    Ok(public)
}

/// Reads a public key: `path` (or `path.pub`) as TUF key JSON, or the public half of a private
/// key file.
pub async fn read_public(path: &Path) -> Result<Key> {
    let pub_path = with_extension(path, "pub");
    match std::fs::read(&pub_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Key {
            path: pub_path,
            message: format!("not a TUF public key: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key_path = with_extension(path, "key");
            if !key_path.exists() {
                return Err(Error::Key {
                    path: pub_path,
                    message: format!("not found, nor a private key {}", key_path.display()),
                });
            }
            Ok(SigningKey::load(path).await?.public)
        }
        Err(e) => Err(Error::io(&pub_path, e)),
    }
}

/// The TUF key id of `key`.
pub fn key_id(key: &Key, path: &Path) -> Result<String> {
    key.key_id()
        .map(|id| hex::encode(&*id))
        .map_err(|e| Error::Key {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// `path` itself when it exists or already ends in `.ext`, else `path.ext`.
fn with_extension(path: &Path, ext: &str) -> PathBuf {
    if path.extension().is_some_and(|e| e == ext) {
        return path.to_path_buf();
    }
    let mut with = path.as_os_str().to_owned();
    with.push(".");
    with.push(ext);
    let with = PathBuf::from(with);
    if !with.exists() && path.is_file() && ext == "key" {
        return path.to_path_buf();
    }
    with
}

/// Writes `bytes` to `path`, which must not exist (no file, no link), with `mode`, and syncs
/// it and its directory: keys are written before metadata trusting them is pushed, and a
/// power loss must not leave a registry trusting a key that is not on disk.
#[cfg(unix)]
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        // Left half written (a full disk), it would stand in the way of the next try.
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    crate::atomic::sync_dir_of(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generated_keys_load_and_match_their_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("team-a");
        let public = generate(&stem).unwrap();
        let loaded = SigningKey::load(&stem).await.unwrap();
        assert_eq!(loaded.public(), &public);
        assert_eq!(read_public(&stem).await.unwrap(), public);
        assert!(matches!(generate(&stem), Err(Error::Key { .. })));
        let shown = format!("{loaded:?}");
        assert!(shown.contains("team-a.key"), "{shown}");
        assert!(
            !shown.contains(&format!("{:?}", loaded.pkcs8)),
            "the private key is never printed: {shown}"
        );
    }

    #[tokio::test]
    async fn a_public_key_handed_over_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("team-a");
        let handed_over = generate(&dir.path().join("theirs")).unwrap();
        std::fs::rename(dir.path().join("theirs.pub"), stem.with_extension("pub")).unwrap();
        let err = generate(&stem).unwrap_err();
        assert!(
            matches!(err, Error::Key { ref path, .. } if path.ends_with("team-a.pub")),
            "{err}"
        );
        assert!(!stem.with_extension("key").exists());
        assert_eq!(read_public(&stem).await.unwrap(), handed_over);
    }

    #[tokio::test]
    async fn a_missing_public_key_names_both_files_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_public(&dir.path().join("nobody")).await.unwrap_err();
        let said = err.to_string();
        assert!(
            said.contains("nobody.pub: not found, nor a private key"),
            "{said}"
        );
        assert!(said.contains("nobody.key"), "{said}");
    }
}
