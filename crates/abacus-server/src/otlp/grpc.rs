//! OTLP/gRPC receiver: `MetricsService/Export` (gzip accepted).
//!
//! The token is checked by an interceptor, before the request message is decompressed or
//! decoded: a client without the token gets `UNAUTHENTICATED` whatever it sends. A message
//! that is not a valid `ExportMetricsServiceRequest` gets `INTERNAL` ("failed to decode
//! Protobuf message"), the code gRPC prescribes for a request that cannot be parsed.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;

use crate::app::AppState;
use crate::telemetry::Protocol;

/// Every method of the gRPC service (full paths); all need the token when one is set.
pub const METHODS: &[&str] = &["/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"];

/// The gRPC metrics service.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    state: AppState,
}

/// Refuses calls without the configured token (before the message is decoded).
#[derive(Debug, Clone)]
pub struct TokenCheck {
    state: AppState,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.state.authorized(auth) {
            return Ok(request);
        }
        let t = self.state.telemetry();
        t.request(Protocol::OtlpGrpc);
        t.rejects(Protocol::OtlpGrpc, "unauthorized", 1);
        Err(tonic::Status::unauthenticated(
            "missing or invalid bearer token",
        ))
    }
}

/// The tonic service for `state`, accepting gzip and messages up to the configured
/// decompressed OTLP limit, behind the token check.
pub fn service(state: AppState) -> InterceptedService<MetricsServiceServer<OtlpGrpc>, TokenCheck> {
    let limit = state.config().limits.otlp_max_decompressed_bytes;
    let server = MetricsServiceServer::new(OtlpGrpc {
        state: state.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .max_decoding_message_size(limit);
    InterceptedService::new(server, TokenCheck { state })
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.state.telemetry().request(Protocol::OtlpGrpc);
        Ok(tonic::Response::new(
            self.state
                .export_otlp(Protocol::OtlpGrpc, request.get_ref()),
        ))
    }
}
