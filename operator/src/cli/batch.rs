//! `apply` and `plan` of a whole checkout: every resource read from the manifests, reconciled
//! with bounded concurrency, in an order that keeps rival resources from racing.
use super::manifests::Manifests;
use crate::reconcile::{channel, company, tables, Context, Report};

/// Reconciles everything read from a directory: the tables first, then channels and companies
/// (`concurrency` at a time). Resources that would touch the same AWS objects (two Channels of
/// one type; two Companies with the same ids or names) run one after the other, so the first
/// claims the objects and the others get a conflict without writing anything. Reports come back
/// tables first, then by kind, namespace and name; manifests that did not parse report among
/// their kind. Each resource is dropped once reconciled, so a checkout of 10,000 Companies never
/// holds all of them and all their reports at once.
pub async fn reconcile_manifests(ctx: &Context, mut manifests: Manifests, concurrency: usize) -> Vec<Report> {
    let (companies, channels) = (std::mem::take(&mut manifests.companies), std::mem::take(&mut manifests.channels));
    let invalid = std::mem::take(&mut manifests.invalid);
    let manifests = &manifests; // what is left: the Secrets' values
    let tables = tables::reconcile(ctx).await;
    let channel_groups = overlapping(channels, |c| vec![c.spec.kind.to_string()]);
    let company_groups = overlapping(companies, |c| {
        let names = [&c.spec.company_name, &c.spec.project_name].map(|n| multicomms_wire::names::slug(n));
        vec![format!("ids {} {}", c.spec.company_id, c.spec.project_id), format!("names {} {}", names[0], names[1])]
    });
    let channels = run_groups(channel_groups, concurrency, |c| async move {
        channel::reconcile(ctx, &c, manifests.secrets_for(&c)).await
    })
    .await;
    let companies = run_groups(company_groups, concurrency, |c| async move {
        company::reconcile(ctx, &c, manifests.secrets_for(&c)).await
    })
    .await;
    let mut resources: Vec<Report> = invalid.into_iter().chain(channels).chain(companies).collect();
    resources.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    std::iter::once(tables).chain(resources).collect()
}

/// Groups resources that share any key (transitively), each group in input order.
fn overlapping<K>(resources: Vec<K>, keys: impl Fn(&K) -> Vec<String>) -> Vec<Vec<K>> {
    // Union-find over resource indices, joined through the first resource seen with each key.
    let mut parent: Vec<usize> = (0..resources.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, resource) in resources.iter().enumerate() {
        for key in keys(resource) {
            let j = *first_with_key.entry(key).or_insert(i);
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<K>> = std::collections::BTreeMap::new();
    for (i, resource) in resources.into_iter().enumerate() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(resource);
    }
    groups.into_values().collect()
}

/// Groups run `concurrency` at a time; the members of one group one after the other.
async fn run_groups<K, F, Fut>(groups: Vec<Vec<K>>, concurrency: usize, reconcile: F) -> Vec<Report>
where
    F: Fn(K) -> Fut,
    Fut: std::future::Future<Output = Report>,
{
    use futures::StreamExt;
    let reconcile = &reconcile;
    let per_group = futures::stream::iter(groups)
        .map(|group| async move {
            let mut reports = Vec::with_capacity(group.len());
            for resource in group {
                reports.push(reconcile(resource).await);
            }
            reports
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    per_group.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::overlapping;

    #[test]
    fn resources_sharing_a_key_are_grouped_transitively_in_order() {
        let items = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("e", "y")];
        // c shares x with a; e shares y with b; d is alone. Link b and d through a second key.
        let groups = overlapping(items.to_vec(), |(name, key)| {
            let mut keys = vec![key.to_string()];
            if *name == "d" || *name == "b" {
                keys.push("bd".into());
            }
            keys
        });
        let names: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|(n, _)| *n).collect()).collect();
        assert_eq!(names, [vec!["a", "c"], vec!["b", "d", "e"]]);
    }
}
