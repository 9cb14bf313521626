//! Pure mapping of windows to DynamoDB items (no I/O).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::sinks::sqlite::encode::Row;

/// One item per row; attribute names as in the [module docs](super).
pub fn item(r: &Row) -> HashMap<String, AttributeValue> {
    let n = |x: f64| AttributeValue::N(format!("{x}"));
    let mut m = HashMap::with_capacity(12);
    m.insert("series".to_owned(), AttributeValue::S(r.series.clone()));
    m.insert(
        "window_start".to_owned(),
        AttributeValue::N(r.window_start.to_string()),
    );
    m.insert(
        "window_end".to_owned(),
        AttributeValue::N(r.window_end.to_string()),
    );
    m.insert("name".to_owned(), AttributeValue::S(r.name.clone()));
    m.insert("labels".to_owned(), AttributeValue::S(r.labels.clone()));
    m.insert("kind".to_owned(), AttributeValue::S(r.kind.to_owned()));
    m.insert("unit".to_owned(), AttributeValue::S(r.unit.to_owned()));
    m.insert("count".to_owned(), AttributeValue::N(r.count.to_string()));
    // DynamoDB numbers cannot be NaN or infinite: such sums are left out.
    if r.sum.is_finite() {
        m.insert("sum".to_owned(), n(r.sum));
    }
    if let Some(v) = r.min.filter(|v| v.is_finite()) {
        m.insert("min".to_owned(), n(v));
    }
    if let Some(v) = r.max.filter(|v| v.is_finite()) {
        m.insert("max".to_owned(), n(v));
    }
    if let Some(b) = &r.buckets {
        m.insert("buckets".to_owned(), AttributeValue::S(b.clone()));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::sqlite::encode::rows;
    use abacus::Registry;

    #[test]
    fn items_carry_the_keys_and_values() {
        let reg = Registry::new();
        reg.increment_counter("req", &[("svc", "a")], 4);
        reg.record_f64("lat", &[], f64::NAN);
        reg.record_f64("lat", &[], 2.5);
        let w = reg.delta();
        let items: Vec<_> = rows(&w).iter().map(item).collect();
        let req = items
            .iter()
            .find(|i| i["name"] == AttributeValue::S("req".into()))
            .unwrap();
        assert_eq!(req["series"], AttributeValue::S("req{svc=\"a\"}".into()));
        assert_eq!(req["sum"], AttributeValue::N("4".into()));
        let start = crate::sinks::unix_ms(w.start).to_string();
        assert_eq!(req["window_start"], AttributeValue::N(start));
        for i in &items {
            for v in i.values() {
                if let AttributeValue::N(x) = v {
                    assert!(x.parse::<f64>().unwrap().is_finite(), "{x}");
                }
            }
        }
    }
}
