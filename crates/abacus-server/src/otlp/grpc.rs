//! OTLP/gRPC receiver: `MetricsService/Export` (gzip accepted).

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::codec::CompressionEncoding;

use crate::app::AppState;
use crate::telemetry::Protocol;

/// The gRPC metrics service.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    state: AppState,
}

/// The tonic service for `state`, accepting gzip and messages up to the configured
/// decompressed OTLP limit.
pub fn service(state: AppState) -> MetricsServiceServer<OtlpGrpc> {
    let limit = state.config().limits.otlp_max_decompressed_bytes;
    MetricsServiceServer::new(OtlpGrpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let t = self.state.telemetry();
        t.request(Protocol::OtlpGrpc);
        let auth = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if !self.state.authorized(auth) {
            t.rejects(Protocol::OtlpGrpc, "unauthorized", 1);
            return Err(tonic::Status::unauthenticated(
                "missing or invalid bearer token",
            ));
        }
        Ok(tonic::Response::new(
            self.state
                .export_otlp(Protocol::OtlpGrpc, request.get_ref()),
        ))
    }
}
