//! Decode an OTLP/HTTP metrics request body.
//!
//! * `Content-Type`: `application/x-protobuf` (also `application/protobuf`)
//!   → protobuf; `application/json` → OTLP/JSON. Parameters such as
//!   `; charset=utf-8` are ignored, matching is case-insensitive. A missing
//!   content type is treated as protobuf (the OTLP/HTTP default). Anything
//!   else → [`DecodeError::UnsupportedContentType`] (HTTP 415).
//! * `Content-Encoding`: absent / `identity` → as-is; `gzip` / `x-gzip` →
//!   gunzipped (concatenated gzip members are accepted), producing at most
//!   [`DecodeLimits::max_decompressed_bytes`]; more →
//!   [`DecodeError::TooLarge`] (HTTP 413). Other encodings →
//!   [`DecodeError::UnsupportedContentEncoding`] (HTTP 415).
//! * Bodies (compressed or not) larger than [`DecodeLimits::max_body_bytes`]
//!   → [`DecodeError::TooLarge`].
//!
//! OTLP/JSON quirks handled by `opentelemetry-proto`'s serde support (feature
//! `with-serde`): field names are lowerCamelCase; 64-bit integers
//! (`timeUnixNano`, `count`, `asInt`, `bucketCounts`, `intValue`, …) are
//! accepted as JSON strings or numbers; enums (`aggregationTemporality`) are
//! integers; trace/span ids are hex strings; unknown fields are ignored.
//! Quirk: `Metric.data` is a flattened `Option` there, so a *malformed*
//! `gauge`/`sum`/… object does not fail decoding but yields a metric without
//! data, which [`convert`](super::convert) reports as rejected.
//! `serde_json` rejects nesting deeper than 128 levels; prost limits protobuf
//! message nesting to 100.

use std::io::Read as _;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;

/// Body encoding selected from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Binary protobuf.
    Protobuf,
    /// OTLP/JSON.
    Json,
}

/// Size limits for [`decode_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum size of the body as received. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Maximum size after decompression. Default 64 MiB.
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// `Content-Type` is not protobuf or JSON.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// `Content-Encoding` is not identity or gzip.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// The body or its decompressed form exceeds a limit.
    #[error("body exceeds {limit} bytes")]
    TooLarge {
        /// The limit that was hit, in bytes.
        limit: usize,
    },
    /// The gzip stream is corrupt.
    #[error("invalid gzip body: {0}")]
    Gzip(#[source] std::io::Error),
    /// The protobuf message is malformed.
    #[error("invalid protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON document is malformed or does not match the OTLP schema.
    #[error("invalid OTLP/JSON body: {0}")]
    Json(#[from] serde_json::Error),
}

impl DecodeError {
    /// HTTP status: 415 for unsupported type/encoding, 413 for size limits,
    /// 400 for malformed bodies.
    #[must_use]
    pub const fn status_code(&self) -> u16 {
        match self {
            Self::UnsupportedContentType(_) | Self::UnsupportedContentEncoding(_) => 415,
            Self::TooLarge { .. } => 413,
            Self::Gzip(_) | Self::Protobuf(_) | Self::Json(_) => 400,
        }
    }
}

/// Map a `Content-Type` header value to a [`BodyFormat`].
///
/// # Errors
/// [`DecodeError::UnsupportedContentType`] for other media types.
pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, DecodeError> {
    let Some(ct) = content_type else {
        return Ok(BodyFormat::Protobuf);
    };
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/x-protobuf")
        || media.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(BodyFormat::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Ok(BodyFormat::Json)
    } else {
        Err(DecodeError::UnsupportedContentType(ct.to_owned()))
    }
}

/// Undo `Content-Encoding`, enforcing the size limits. Borrows when the body
/// is not compressed.
///
/// # Errors
/// [`DecodeError::TooLarge`], [`DecodeError::Gzip`] or
/// [`DecodeError::UnsupportedContentEncoding`].
pub fn decompress<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limits: &DecodeLimits,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let enc = content_encoding.map(str::trim).unwrap_or_default();
    if enc.is_empty() || enc.eq_ignore_ascii_case("identity") {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    if !(enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip")) {
        return Err(DecodeError::UnsupportedContentEncoding(enc.to_owned()));
    }
    let cap = limits.max_decompressed_bytes;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(DecodeError::Gzip)?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge { limit: cap });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decode an OTLP/HTTP metrics export body.
///
/// # Errors
/// See [`DecodeError`] and [`DecodeError::status_code`].
pub fn decode_request(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limits: &DecodeLimits,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    let format = body_format(content_type)?;
    let raw = decompress(body, content_encoding, limits)?;
    match format {
        BodyFormat::Protobuf => Ok(ExportMetricsServiceRequest::decode(raw.as_ref())?),
        BodyFormat::Json => Ok(serde_json::from_slice(raw.as_ref())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use proptest::prelude::*;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
      "scopeMetrics":[{"scope":{"name":"lib"},"metrics":[
        {"name":"req","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{"startTimeUnixNano":"1700000000000000000","timeUnixNano":1700000001000000000,"asInt":"42",
            "attributes":[{"key":"code","value":{"intValue":"200"}}],
            "exemplars":[{"timeUnixNano":"1","asDouble":1.0,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}},
        {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3","sum":2.5,"bucketCounts":["1",2],"explicitBounds":[1.0]}]}}
      ]}]}],"someFutureField":true}"#;

    fn sample_request() -> ExportMetricsServiceRequest {
        decode_request(
            JSON.as_bytes(),
            Some("application/json"),
            None,
            &DecodeLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn otlp_json_accepts_string_and_number_64_bit_ints_hex_ids_and_int_enums() {
        let r = sample_request();
        let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(s)) = &metrics[0].data else {
            panic!("expected sum")
        };
        assert_eq!(s.aggregation_temporality, 2);
        assert!(s.is_monotonic);
        let p = &s.data_points[0];
        assert_eq!(p.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(p.time_unix_nano, 1_700_000_001_000_000_000);
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(42)));
        assert_eq!(
            p.exemplars[0].span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
            panic!("expected histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
        assert_eq!(h.data_points[0].count, 3);
    }

    #[test]
    fn protobuf_body_roundtrips() {
        let r = sample_request();
        let bytes = r.encode_to_vec();
        let back = decode_request(
            &bytes,
            Some("application/x-protobuf"),
            None,
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn missing_content_type_defaults_to_protobuf() {
        let bytes = sample_request().encode_to_vec();
        assert!(decode_request(&bytes, None, None, &DecodeLimits::default()).is_ok());
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert_eq!(
            body_format(Some("Application/JSON; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            body_format(Some("application/protobuf")).unwrap(),
            BodyFormat::Protobuf
        );
    }

    #[test]
    fn unsupported_content_type_maps_to_415() {
        let e =
            decode_request(b"x", Some("text/plain"), None, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(e, DecodeError::UnsupportedContentType(_)));
        assert_eq!(e.status_code(), 415);
    }

    #[test]
    fn unsupported_content_encoding_maps_to_415() {
        let e = decode_request(b"x", None, Some("br"), &DecodeLimits::default()).unwrap_err();
        assert!(matches!(e, DecodeError::UnsupportedContentEncoding(_)));
        assert_eq!(e.status_code(), 415);
    }

    #[test]
    fn gzip_json_and_protobuf_bodies_are_decoded() {
        let limits = DecodeLimits::default();
        let r = decode_request(
            &gzip(JSON.as_bytes()),
            Some("application/json"),
            Some("gzip"),
            &limits,
        )
        .unwrap();
        assert_eq!(r, sample_request());
        let pb = gzip(&sample_request().encode_to_vec());
        assert!(decode_request(&pb, Some("application/x-protobuf"), Some("GZIP"), &limits).is_ok());
    }

    #[test]
    fn concatenated_gzip_members_are_decoded() {
        let mut body = gzip(b"abc");
        body.extend(gzip(b"def"));
        let out = decompress(&body, Some("gzip"), &DecodeLimits::default()).unwrap();
        assert_eq!(out.as_ref(), b"abcdef");
    }

    #[test]
    fn gzip_bomb_over_cap_maps_to_413() {
        let limits = DecodeLimits {
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 1000,
        };
        let body = gzip(&vec![0u8; 100_000]);
        let e = decompress(&body, Some("gzip"), &limits).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { limit: 1000 }));
        assert_eq!(e.status_code(), 413);
        // Exactly at the cap is fine.
        assert_eq!(
            decompress(&gzip(&[1u8; 1000]), Some("gzip"), &limits)
                .unwrap()
                .len(),
            1000
        );
    }

    #[test]
    fn oversized_raw_body_maps_to_413() {
        let limits = DecodeLimits {
            max_body_bytes: 10,
            max_decompressed_bytes: 100,
        };
        let e = decode_request(&[0u8; 11], None, None, &limits).unwrap_err();
        assert_eq!(e.status_code(), 413);
    }

    #[test]
    fn corrupt_bodies_map_to_400() {
        let limits = DecodeLimits::default();
        let cases = [
            decode_request(b"not gzip", None, Some("gzip"), &limits),
            decode_request(
                b"\xff\xff\xff",
                Some("application/x-protobuf"),
                None,
                &limits,
            ),
            decode_request(
                b"{\"resourceMetrics\":",
                Some("application/json"),
                None,
                &limits,
            ),
            decode_request(
                br#"{"resourceMetrics":[{"scopeMetrics":"nope"}]}"#,
                Some("application/json"),
                None,
                &limits,
            ),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let e = c.expect_err(&format!("case {i}"));
            assert_eq!(e.status_code(), 400, "{e}");
        }
    }

    #[test]
    fn malformed_metric_data_in_json_decodes_as_metric_without_data() {
        // `Metric.data` is a `#[serde(flatten)] Option<_>` in opentelemetry-proto,
        // which turns a malformed oneof into `None` instead of an error. The
        // converter reports such metrics ("metric has no data").
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":[{"timeUnixNano":"abc"}]}}]}]}]}"#;
        let r = decode_request(
            body,
            Some("application/json"),
            None,
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(r.resource_metrics[0].scope_metrics[0].metrics[0].data, None);
    }

    #[test]
    fn identity_encoding_borrows_body() {
        let body = b"abc";
        assert!(matches!(
            decompress(body, Some("identity"), &DecodeLimits::default()).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_body_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            ct in 0usize..3,
            gz in any::<bool>(),
        ) {
            let ct = [None, Some("application/json"), Some("application/x-protobuf")][ct];
            let limits = DecodeLimits::default();
            let _ = decode_request(&bytes, ct, None, &limits);
            let _ = decode_request(&gzip(&bytes), ct, if gz { Some("gzip") } else { None }, &limits);
        }
    }
}
