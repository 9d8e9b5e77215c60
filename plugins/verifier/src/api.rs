//! The `tufoci.verifier.v1` API generated from `proto/`, and conversions to OCI descriptors.

#![allow(missing_docs, clippy::pedantic)]

tonic::include_proto!("tufoci.verifier.v1");

impl Descriptor {
    /// The API form of an OCI descriptor.
    pub fn from_oci(d: &oci_spec::image::Descriptor) -> Self {
        Descriptor {
            media_type: d.media_type().to_string(),
            digest: d.digest().to_string(),
            size: d.size(),
            artifact_type: d
                .artifact_type()
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            annotations: d
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    /// The OCI descriptor, or why these fields do not make one.
    pub fn to_oci(&self) -> Result<oci_spec::image::Descriptor, String> {
        let mut value = serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        });
        if !self.artifact_type.is_empty() {
            value["artifactType"] = self.artifact_type.clone().into();
        }
        if !self.annotations.is_empty() {
            value["annotations"] =
                serde_json::to_value(&self.annotations).map_err(|e| e.to_string())?;
        }
        serde_json::from_value(value).map_err(|e| format!("invalid descriptor: {e}"))
    }
}
