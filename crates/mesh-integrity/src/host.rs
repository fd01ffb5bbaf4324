//! Istio's host handling, reproduced exactly (istio/istio `pkg/config/host` and
//! `pkg/config/analysis/analyzers/util`).

/// Istio's hard-coded cluster domain (`util.DefaultClusterLocalDomain`).
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// `util.ConvertHostToFQDN`: a host with no `.` that does not start with `*` becomes
/// `<host>.<namespace>.svc.cluster.local`; anything else is kept verbatim (so `reviews.default`
/// is *not* expanded, as in Istio).
pub fn to_fqdn(namespace: &str, host: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    }
}

/// Whether a host is wildcarded (`host.Name.IsWildCarded`).
pub fn is_wild(host: &str) -> bool {
    host.starts_with('*')
}

/// `host.Name.Matches`: equality for plain hosts, suffix matching when either side is a wildcard.
pub fn matches(a: &str, b: &str) -> bool {
    match (is_wild(a), is_wild(b)) {
        (true, true) => {
            if a.len() < b.len() {
                b[1..].ends_with(&a[1..])
            } else {
                a[1..].ends_with(&b[1..])
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// The host without a leading `*`, reversed: a wildcard matches exactly the hosts whose reversed
/// base starts with its own (see [`matches`]), so that an index over it finds them as one range.
pub fn reversed_base(host: &str) -> String {
    host.strip_prefix('*')
        .unwrap_or(host)
        .chars()
        .rev()
        .collect()
}

/// `util.GetResourceNameFromHost`: `name.ns.svc.cluster.local` → (ns, name); anything else →
/// (the referrer's namespace, the host verbatim). Returned as the `ns/name` key DestinationRule
/// subsets are looked up by.
pub fn resource_key(default_namespace: &str, host: &str) -> String {
    if let Some((ns, name)) = split_cluster_local(host) {
        format!("{ns}/{name}")
    } else {
        format!("{default_namespace}/{host}")
    }
}

/// `^(.+)\.(.+)\.svc\.cluster\.local$` (greedy first group, as Go's regexp): (namespace, name).
pub fn split_cluster_local(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(".svc.cluster.local")?;
    let dot = rest.rfind('.')?;
    let (name, ns) = (&rest[..dot], &rest[dot + 1..]);
    if name.is_empty() || ns.is_empty() {
        None
    } else {
        Some((ns, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_expansion_is_istios() {
        assert_eq!(
            to_fqdn("default", "reviews"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(to_fqdn("default", "reviews.default"), "reviews.default");
        assert_eq!(to_fqdn("default", "*"), "*");
        assert_eq!(to_fqdn("default", "*.example.com"), "*.example.com");
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("*.shop.example.com", "cart.shop.example.com"));
        assert!(matches("cart.shop.example.com", "*.shop.example.com"));
        assert!(matches("*.example.com", "*.shop.example.com"));
        assert!(matches("*", "anything.example.com"));
        assert!(!matches("*.shop.example.com", "shop.example.com"));
        assert!(!matches("a.example.com", "b.example.com"));
    }

    proptest::proptest! {
        /// What the wildcard overlap queries rely on: a wildcard matches a host at least as long
        /// as its base exactly when the host's reversed base starts with its own.
        #[test]
        fn a_wildcard_matches_exactly_the_hosts_its_reversed_base_prefixes(
            wildcard in "\\*[ab.]{0,5}",
            host in "\\*?[ab.]{0,6}",
        ) {
            let longer_or_equal = host.len() - usize::from(is_wild(&host)) >= wildcard.len() - 1;
            let prefixed = reversed_base(&host).starts_with(&reversed_base(&wildcard));
            proptest::prop_assert_eq!(matches(&wildcard, &host) && longer_or_equal, prefixed);
        }
    }

    #[test]
    fn resource_keys() {
        assert_eq!(resource_key("default", "reviews"), "default/reviews");
        assert_eq!(
            resource_key("x", "reviews.default.svc.cluster.local"),
            "default/reviews"
        );
        assert_eq!(resource_key("x", "a.b.c.svc.cluster.local"), "c/a.b");
        assert_eq!(resource_key("x", "reviews.default"), "x/reviews.default");
    }
}
