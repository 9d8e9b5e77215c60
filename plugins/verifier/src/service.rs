//! The gRPC verification service: the engine behind `tufoci.verifier.v1.Verifier`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::{self, verifier_server};
use crate::engine::Engine;

/// Serves verifications from one engine (its verifiers keep metadata warm between calls).
#[derive(Debug, Clone)]
pub struct VerifierService {
    engine: Arc<Engine>,
}

impl VerifierService {
    /// A service answering from `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        VerifierService { engine }
    }
}

#[tonic::async_trait]
impl verifier_server::Verifier for VerifierService {
    async fn verify(
        &self,
        request: Request<api::VerifyRequest>,
    ) -> Result<Response<api::VerifyResponse>, Status> {
        let request = request.into_inner();
        if request.reference.is_empty() {
            return Err(Status::invalid_argument("reference is empty"));
        }
        let running = &self.engine.policy().digest;
        if !request.policy_digest.is_empty() && request.policy_digest != *running {
            tracing::warn!(
                caller = request.policy_digest,
                running = %running,
                "a caller read another policy than the service runs; restart the service to apply it"
            );
            return Err(Status::failed_precondition(format!(
                "the service runs policy {running}, the caller read {}; restart the service",
                request.policy_digest
            )));
        }
        let descriptor = request
            .descriptor
            .as_ref()
            .map(api::Descriptor::to_oci)
            .transpose()
            .map_err(Status::invalid_argument)?;
        let answer = self
            .engine
            .check(&request.reference, descriptor.as_ref())
            .await;
        Ok(Response::new(api::VerifyResponse {
            allowed: answer.allowed,
            reason: answer.reason,
            scope: answer.scope.unwrap_or_default(),
            target: answer.target.map(|t| api::VerifiedTarget {
                name: t.name().to_string(),
                role: t.role().to_string(),
                descriptor: Some(api::Descriptor::from_oci(t.descriptor())),
            }),
        }))
    }

    async fn refresh(
        &self,
        _request: Request<api::RefreshRequest>,
    ) -> Result<Response<api::RefreshResponse>, Status> {
        self.engine.refresh();
        Ok(Response::new(api::RefreshResponse {}))
    }

    async fn health(
        &self,
        _request: Request<api::HealthRequest>,
    ) -> Result<Response<api::HealthResponse>, Status> {
        Ok(Response::new(api::HealthResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            scopes: self
                .engine
                .policy()
                .scopes
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        }))
    }
}
