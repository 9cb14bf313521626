//! OTLP receivers: HTTP (`POST /v1/metrics`, protobuf or JSON, optionally gzip) and gRPC
//! (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`). Both decode with
//! [`crate::ingest::otlp::decode`], convert with [`crate::ingest::otlp::convert`] (one
//! shared cumulative→delta table) and answer with `partial_success.rejected_data_points`
//! when some points were refused.

pub mod grpc;
pub mod http;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use crate::app::AppState;
use crate::ingest::otlp::convert::convert_request_shared_into;
use crate::telemetry::Protocol;

impl AppState {
    /// Converts and applies one OTLP export request.
    pub fn export_otlp(
        &self,
        protocol: Protocol,
        req: &ExportMetricsServiceRequest,
    ) -> ExportMetricsServiceResponse {
        // Samples are applied as they are converted: no `Vec<Sample>` of owned strings.
        let mut sink = self.apply_sink(protocol);
        let out = convert_request_shared_into(
            req,
            &self.inner.otlp_tracker,
            &self.inner.otlp_convert,
            &mut sink,
        );
        let applied = sink.finish();
        self.telemetry()
            .rejects(protocol, "data_point", out.rejected_data_points);
        let rejected = out.rejected_data_points.saturating_add(applied.rejected);
        if rejected == 0 {
            return ExportMetricsServiceResponse {
                partial_success: None,
            };
        }
        let mut message = out.error_message();
        if applied.rejected > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&format!(
                "{} sample(s) could not be applied (fractional increment of an integer counter or a full set)",
                applied.rejected
            ));
        }
        ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
                error_message: message,
            }),
        }
    }
}
