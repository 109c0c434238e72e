//! A work's manifests: small ones arrive with the sync, large ones are fetched from the hub in
//! chunks (`<prefix>.hub.<cluster>.manifests`); both are checked against their digest (SHA-256 of
//! the canonical form, `fleetbus_schema::manifests`) and kept while the work wants them.

use std::collections::HashMap;
use std::sync::Arc;

use fleetbus_nats::rpc;
use fleetbus_schema::v1::{ManifestWork, Manifests, ManifestsChunk, ManifestsChunkRequest};
use fleetbus_schema::{HubTopic, manifests};
use prost::Message;
use serde_json::Value;

use crate::config::Config;

/// Each manifest parsed, or why it does not parse.
pub type Parsed = Arc<Vec<Result<Value, String>>>;

/// Manifests by digest.
pub struct Fetcher {
    client: async_nats::Client,
    subject: String,
    cache: HashMap<String, Parsed>,
}

impl Fetcher {
    /// A fetcher for this spoke.
    pub fn new(client: async_nats::Client, config: &Config) -> Self {
        Self {
            client,
            subject: config.subjects.hub(&config.cluster, HubTopic::Manifests),
            cache: HashMap::new(),
        }
    }

    /// The manifests of `work`.
    pub async fn get(&mut self, work: &ManifestWork) -> Result<Parsed, String> {
        if let Some(parsed) = self.cache.get(&work.manifests_digest) {
            return Ok(parsed.clone());
        }
        let downloaded;
        let manifests = match &work.manifests {
            // Small works arrive with the sync.
            Some(inline) => inline,
            None => {
                let bytes = self.download(work).await?;
                downloaded = Manifests::decode(bytes.as_slice())
                    .map_err(|e| format!("undecodable manifests: {e}"))?;
                // The hub sends the canonical form; what an older hub stored is hashed as sent.
                if manifests::digest_bytes(&bytes) == work.manifests_digest {
                    return Ok(self.keep(work, &downloaded));
                }
                &downloaded
            }
        };
        if manifests::digest(manifests) != work.manifests_digest {
            return Err("the manifests do not match their digest".into());
        }
        Ok(self.keep(work, manifests))
    }

    /// Parses checked manifests and keeps them under their digest.
    fn keep(&mut self, work: &ManifestWork, manifests: &Manifests) -> Parsed {
        let parsed: Parsed = Arc::new(
            manifests
                .objects
                .iter()
                .map(|raw| {
                    serde_json::from_slice(raw).map_err(|e| format!("not a JSON object: {e}"))
                })
                .collect(),
        );
        self.cache
            .insert(work.manifests_digest.clone(), parsed.clone());
        parsed
    }

    /// Fetches manifests the sync did not carry, chunk by chunk.
    async fn download(&self, work: &ManifestWork) -> Result<Vec<u8>, String> {
        let size = usize::try_from(work.manifests_size).unwrap_or(0);
        let mut bytes = Vec::with_capacity(size.min(manifests::MAX_BYTES));
        loop {
            let request = ManifestsChunkRequest {
                name: work.name.clone(),
                digest: work.manifests_digest.clone(),
                offset: bytes.len() as i64,
            };
            let chunk: ManifestsChunk = rpc::call(&self.client, self.subject.clone(), &request)
                .await
                .map_err(|e| format!("cannot fetch the manifests: {e}"))?;
            if chunk.data.is_empty() && (bytes.len() as i64) < chunk.total_size {
                return Err("the hub sent an empty chunk".into());
            }
            if bytes.len() + chunk.data.len() > manifests::MAX_BYTES {
                return Err(format!(
                    "the hub sent more than {} bytes of manifests",
                    manifests::MAX_BYTES
                ));
            }
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() as i64 >= chunk.total_size {
                return Ok(bytes);
            }
        }
    }

    /// Drops manifests no desired work uses.
    pub fn retain(&mut self, digests: &[&str]) {
        self.cache.retain(|d, _| digests.contains(&d.as_str()));
    }
}
