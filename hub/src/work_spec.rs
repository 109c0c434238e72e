//! What a valid ManifestWork is: names, manifests that are Kubernetes objects (apiVersion,
//! kind, metadata.name, no generateName, no duplicates), a size limit, and well-formed
//! manifest configs.

use std::collections::HashSet;

use fleetbus_schema::v1::{ManifestConfig, ManifestWork, Manifests};
use fleetbus_schema::{ClusterName, names::validate_label};
use prost::Message;

use crate::error::ApiError;

pub use fleetbus_schema::manifests::MAX_BYTES as MAX_MANIFESTS_BYTES;

/// Validated cluster name of a work, after checking the work's name.
pub fn names(cluster: &str, name: &str) -> Result<ClusterName, ApiError> {
    let cluster = ClusterName::new(cluster).map_err(|e| ApiError::bad_request(e.to_string()))?;
    validate_label("work name", name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(cluster)
}

/// Checks a work's spec (not its manifests).
pub fn validate(work: &ManifestWork) -> Result<ClusterName, ApiError> {
    let cluster = names(&work.cluster, &work.name)?;
    validate_configs(&work.manifest_configs)?;
    Ok(cluster)
}

/// Checks a work's manifest configs.
pub fn validate_configs(configs: &[ManifestConfig]) -> Result<(), ApiError> {
    for (i, config) in configs.iter().enumerate() {
        let id = config.resource_identifier.clone().unwrap_or_default();
        if id.resource.is_empty() || id.name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "manifestConfigs[{i}].resourceIdentifier needs resource and name"
            )));
        }
        for rule in &config.feedback_rules {
            for path in &rule.json_paths {
                if path.name.is_empty() || !path.path.starts_with('.') {
                    return Err(ApiError::bad_request(format!(
                        "manifestConfigs[{i}].feedbackRules: each jsonPath needs a name and a path starting with '.' (got {:?})",
                        path.path
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The error for manifests of `len` bytes (0: unknown, more than the limit).
pub fn too_large(len: usize) -> ApiError {
    let size = if len == 0 {
        "more than that".to_owned()
    } else {
        format!("{len} bytes")
    };
    ApiError::bad_request(format!(
        "a work may carry at most 16 MiB of manifests ({MAX_MANIFESTS_BYTES} bytes); these are {size}"
    ))
}

/// Decodes and checks encoded manifests.
pub fn validate_manifests(encoded: &[u8]) -> Result<Manifests, ApiError> {
    if encoded.len() > MAX_MANIFESTS_BYTES {
        return Err(too_large(encoded.len()));
    }
    let manifests = Manifests::decode(encoded)
        .map_err(|e| ApiError::bad_request(format!("undecodable manifests: {e}")))?;
    if manifests.objects.is_empty() {
        return Err(ApiError::bad_request("a work needs at least one manifest"));
    }
    let mut seen = HashSet::new();
    for (i, raw) in manifests.objects.iter().enumerate() {
        let id =
            identity(raw).map_err(|why| ApiError::bad_request(format!("manifests[{i}]: {why}")))?;
        if !seen.insert(id.clone()) {
            return Err(ApiError::bad_request(format!(
                "manifests[{i}]: {} {} appears twice in the work",
                id.1, id.3
            )));
        }
    }
    Ok(manifests)
}

/// `(group, kind, namespace, name)` of one manifest, or why it is not a Kubernetes object.
fn identity(raw: &[u8]) -> Result<(String, String, String, String), String> {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("not a JSON object: {e}"))?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let api_version = text(value.get("apiVersion"));
    let kind = text(value.get("kind"));
    let meta = value.get("metadata");
    let name = text(meta.and_then(|m| m.get("name")));
    if api_version.is_empty() || kind.is_empty() {
        return Err("apiVersion and kind are required".into());
    }
    if meta.and_then(|m| m.get("generateName")).is_some() {
        return Err("generateName is not allowed; give the object a name".into());
    }
    if name.is_empty() {
        return Err(format!("{kind} has no metadata.name"));
    }
    let group = api_version
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_owned());
    let namespace = text(meta.and_then(|m| m.get("namespace")));
    Ok((group, kind, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(objects: &[&str]) -> Vec<u8> {
        Manifests {
            objects: objects.iter().map(|o| o.as_bytes().to_vec()).collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn manifests_must_be_named_unique_objects() {
        let cm =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n"}}"#;
        assert_eq!(
            validate_manifests(&encoded(&[cm])).map(|m| m.objects.len()),
            Ok(1)
        );
        let err = |objects: &[&str]| validate_manifests(&encoded(objects)).unwrap_err().message;
        assert!(err(&[]).contains("at least one"));
        assert!(
            err(&[cm, cm]).contains("appears twice"),
            "{}",
            err(&[cm, cm])
        );
        assert!(err(&["{"]).contains("manifests[0]: not a JSON object"));
        assert!(err(&[r#"{"kind":"ConfigMap"}"#]).contains("apiVersion and kind"));
        assert!(
            err(&[r#"{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"p-"}}"#])
                .contains("generateName")
        );
        assert!(
            err(&[r#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#])
                .contains("Pod has no metadata.name")
        );
        let other_ns =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"m"}}"#;
        assert_eq!(
            validate_manifests(&encoded(&[cm, other_ns])).map(|m| m.objects.len()),
            Ok(2)
        );
    }

    #[test]
    fn oversized_manifests_are_refused_with_the_limit() {
        let big = vec![b' '; MAX_MANIFESTS_BYTES + 1];
        let err = validate_manifests(&big).unwrap_err();
        assert!(err.message.contains("at most 16 MiB"), "{}", err.message);
    }

    #[test]
    fn work_names_are_labels() {
        assert!(names("cluster1", "dep-role").is_ok());
        assert!(names("cluster1", "a.b").is_err());
        assert!(names("cluster1", "").is_err());
    }
}
