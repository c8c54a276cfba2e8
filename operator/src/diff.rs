//! Field-level differences between a desired DynamoDB item and the stored one: what `plan`
//! lists and what decides whether `apply` writes at all.
use aws_sdk_dynamodb::types::AttributeValue;
use multicomms_wire::Item;
use std::collections::{BTreeSet, HashMap};

/// Dotted paths of the attributes that differ (nested maps are compared key by key), sorted.
/// Top-level attributes named in `ignore` do not count.
pub fn item_fields(desired: &Item, observed: &Item, ignore: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    diff_maps(desired, observed, "", ignore, &mut out);
    out
}

fn diff_maps(
    desired: &HashMap<String, AttributeValue>,
    observed: &HashMap<String, AttributeValue>,
    prefix: &str,
    ignore: &[&str],
    out: &mut Vec<String>,
) {
    let keys: BTreeSet<&String> = desired.keys().chain(observed.keys()).collect();
    for key in keys {
        if prefix.is_empty() && ignore.contains(&key.as_str()) {
            continue;
        }
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (desired.get(key), observed.get(key)) {
            (Some(AttributeValue::M(d)), Some(AttributeValue::M(o))) => diff_maps(d, o, &path, &[], out),
            (d, o) if !same(d, o) => out.push(path),
            _ => {}
        }
    }
}

/// Numbers compare by value ("60" and "60.0" are the same number to DynamoDB).
fn same(a: Option<&AttributeValue>, b: Option<&AttributeValue>) -> bool {
    match (a, b) {
        (Some(AttributeValue::N(x)), Some(AttributeValue::N(y))) => {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
        }
        (Some(AttributeValue::L(x)), Some(AttributeValue::L(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(Some(p), Some(q)))
        }
        (Some(AttributeValue::M(x)), Some(AttributeValue::M(y))) => {
            let mut nested = Vec::new();
            diff_maps(x, y, "", &[], &mut nested);
            nested.is_empty()
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn equal_items_have_no_difference() {
        let a = item(&[("x", s("1")), ("n", AttributeValue::N("60".into()))]);
        let b = item(&[("x", s("1")), ("n", AttributeValue::N("60.0".into()))]);
        assert!(item_fields(&a, &b, &[]).is_empty());
    }

    #[test]
    fn nested_changes_are_named_by_path_and_ignored_fields_skipped() {
        let desired = item(&[
            ("channel_config", AttributeValue::M(item(&[("whatsapp", AttributeValue::M(item(&[("n", s("+1"))])))]))),
            ("updated_at", s("now")),
            ("company_name", s("A")),
            ("extra", s("desired only")),
        ]);
        let observed = item(&[
            ("channel_config", AttributeValue::M(item(&[("whatsapp", AttributeValue::M(item(&[("n", s("+2"))])))]))),
            ("updated_at", s("then")),
            ("company_name", s("A")),
            ("stale", s("observed only")),
        ]);
        assert_eq!(item_fields(&desired, &observed, &["updated_at"]), ["channel_config.whatsapp.n", "extra", "stale"]);
    }

    #[test]
    fn list_order_counts() {
        let a = item(&[("l", AttributeValue::L(vec![s("a"), s("b")]))]);
        let b = item(&[("l", AttributeValue::L(vec![s("b"), s("a")]))]);
        assert_eq!(item_fields(&a, &b, &[]), ["l"]);
    }
}
