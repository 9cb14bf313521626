//! Read side of the HTTP API: windows of one metric, per-service health and the
//! Prometheus exposition of the live registry.

mod handlers;

pub(crate) use handlers::{metric_windows, prometheus, services};

/// The parsed query parameters of `GET /metrics/{name}`: `from` / `to` (Unix seconds, finite)
/// and every other parameter as a label filter, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowQuery {
    /// Lower bound on a window's start (inclusive), Unix seconds.
    pub from: Option<f64>,
    /// Upper bound on a window's start (exclusive), Unix seconds.
    pub to: Option<f64>,
    /// `(label, value)` pairs a series must all carry.
    pub filters: Vec<(String, String)>,
}

/// A malformed query parameter (the message names it and its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryParamError(pub String);

impl WindowQuery {
    /// Splits already URL-decoded `(key, value)` pairs: `from` and `to` must be finite
    /// numbers (surrounding whitespace allowed; a repeated key keeps the last value),
    /// everything else is a label filter.
    ///
    /// # Errors
    /// [`QueryParamError`] for a `from` / `to` that is not a finite number.
    pub fn parse(params: &[(String, String)]) -> Result<WindowQuery, QueryParamError> {
        let mut q = WindowQuery::default();
        for (k, v) in params {
            match k.as_str() {
                "from" => q.from = Some(parse_time("from", v)?),
                "to" => q.to = Some(parse_time("to", v)?),
                _ => q.filters.push((k.clone(), v.clone())),
            }
        }
        Ok(q)
    }
}

fn parse_time(name: &str, v: &str) -> Result<f64, QueryParamError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| QueryParamError(format!("{name}={v:?} is not a Unix time in seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn from_to_are_parsed_and_other_keys_are_filters_in_order() {
        let q = WindowQuery::parse(&p(&[
            ("host", "a"),
            ("from", " 10.5 "),
            ("to", "20"),
            ("dc", ""),
        ]))
        .unwrap();
        assert_eq!(q.from, Some(10.5));
        assert_eq!(q.to, Some(20.0));
        assert_eq!(q.filters, p(&[("host", "a"), ("dc", "")]));
    }

    #[test]
    fn non_finite_or_non_numeric_times_are_errors() {
        for bad in ["yesterday", "", "NaN", "inf", "-infinity", "1e400"] {
            let e = WindowQuery::parse(&p(&[("from", bad)])).unwrap_err();
            assert!(e.0.starts_with("from="), "{e}");
            assert!(WindowQuery::parse(&p(&[("to", bad)])).is_err());
        }
    }
}
