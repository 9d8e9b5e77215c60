//! Metadata over plain HTTP: `<base>/<file name>`, 404 meaning "absent" (TUF 5.3.3).

use std::time::Duration;

use tuf_oci::source::MetadataSource;
use tuf_oci::trusted::encode_file_name;
use tuf_oci::{Error, Repository, Result};
use url::Url;

/// Reads metadata and targets from a plain HTTP directory.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    base: Url,
}

impl HttpSource {
    /// Reads files below `base`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let mut base = Url::parse(base)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(HttpSource { client, base })
    }

    /// Downloads `path` (already encoded) below the base, at most `limit` bytes.
    pub async fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let url = self.base.join(path).map_err(|e| Error::InvalidReference {
            reference: path.to_string(),
            reason: e.to_string(),
        })?;
        let failed = |message: String| Error::Registry {
            reference: url.to_string(),
            message,
        };
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(failed(response.status().to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limit {
                return Err(Error::TooLarge {
                    what: url.to_string(),
                    limit,
                });
            }
        }
        Ok(Some(body))
    }
}

impl MetadataSource for HttpSource {
    async fn fetch(
        &self,
        name: &str,
        _near: Option<&Repository>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        self.get(&encode_file_name(name), limit).await
    }
}
