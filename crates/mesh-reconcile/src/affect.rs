//! Which MeshServices a watch event may affect.
//!
//! The conditions of a MeshService depend on objects it does not own: the Gateway it references,
//! a Service or VirtualService holding one of its names, any object claiming one of its hosts.
//! When one of those changes, the MeshService must be reconciled again (a Gateway created
//! elsewhere flips its `ResolvedRefs` within a second). Requeueing every MeshService on every
//! event would not scale to a mesh of 100k VirtualServices, so this module keeps, per MeshService,
//! the few facts that relate it to other objects, and answers "who cares about this event".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshservice_api::MeshService;

/// `(namespace, name)` of a MeshService.
pub type MeshKey = (String, String);

/// What relates one MeshService to other objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    /// The hosts it claims.
    pub hosts: Vec<String>,
    /// `(namespace, name)` of the gateway it references, managed or not.
    pub gateway: Option<(String, String)>,
    /// The Service name it wants.
    pub service_name: String,
}

impl Interest {
    /// The interest of a MeshService in namespace `namespace`.
    pub fn of(meshservice: &MeshService, namespace: &str) -> Interest {
        Interest {
            hosts: meshservice.spec.hosts.clone(),
            gateway: meshservice.spec.gateway.as_ref().map(|gateway| {
                (
                    gateway.effective_namespace(namespace).to_string(),
                    gateway.name.clone(),
                )
            }),
            service_name: meshservice.spec.service_name.clone(),
        }
    }
}

/// Whether two hosts can name the same traffic: equal, or one wildcard covers the other.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    let covers = |wild: &str, host: &str| {
        wild.strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix))
    };
    a == b || covers(a, b) || covers(b, a)
}

/// A change of a watched object, as far as triggers are concerned.
#[derive(Clone, Debug)]
pub enum Touched<'a> {
    /// A MeshService was created, changed or deleted; its hosts before and after.
    MeshService {
        /// Its key.
        key: &'a MeshKey,
        /// Hosts before and after the change.
        hosts: Vec<String>,
    },
    /// A Gateway; `contributors` from its contributors annotation.
    Gateway {
        /// Namespace of the Gateway.
        namespace: &'a str,
        /// Name of the Gateway.
        name: &'a str,
        /// MeshServices named in its contributors annotation.
        contributors: Vec<MeshKey>,
        /// The hosts its servers serve (without the `namespace/` prefix), before and after.
        hosts: Vec<String>,
    },
    /// A core Service; `owner` from its owner annotation.
    Service {
        /// Namespace.
        namespace: &'a str,
        /// Name.
        name: &'a str,
        /// The MeshService its owner annotation names.
        owner: Option<MeshKey>,
    },
    /// A VirtualService, with its hosts before and after the change.
    VirtualService {
        /// Namespace.
        namespace: &'a str,
        /// Name.
        name: &'a str,
        /// The MeshService its owner annotation names.
        owner: Option<MeshKey>,
        /// Hosts before and after the change.
        hosts: Vec<String>,
    },
    /// A ServiceEntry (hosts before and after): its hosts may collide with a MeshService's.
    ServiceEntry {
        /// Hosts before and after the change.
        hosts: Vec<String>,
    },
}

/// `(namespace, name)` of a VirtualService, compactly.
type CompactKey = (Box<str>, Box<str>);

/// The interests of every known MeshService, plus the last seen hosts of each VirtualService so
/// that a VirtualService giving up a host requeues the MeshService that lost it.
#[derive(Debug, Default)]
pub struct Interests {
    meshservices: BTreeMap<MeshKey, Interest>,
    virtual_service_hosts: HashMap<CompactKey, Box<[Box<str>]>>,
}

impl Interests {
    /// Records (or replaces) the interest of a MeshService; returns the previous one.
    pub fn set_meshservice(&mut self, key: MeshKey, interest: Interest) -> Option<Interest> {
        self.meshservices.insert(key, interest)
    }

    /// Forgets a MeshService; returns its interest.
    pub fn remove_meshservice(&mut self, key: &MeshKey) -> Option<Interest> {
        self.meshservices.remove(key)
    }

    /// The interest of a MeshService.
    pub fn meshservice(&self, key: &MeshKey) -> Option<&Interest> {
        self.meshservices.get(key)
    }

    /// Records the hosts of a VirtualService (empty: deleted); returns the hosts it had.
    pub fn set_virtual_service_hosts(
        &mut self,
        namespace: &str,
        name: &str,
        hosts: &[String],
    ) -> Vec<String> {
        let key = (Box::from(namespace), Box::from(name));
        let previous = if hosts.is_empty() {
            self.virtual_service_hosts.remove(&key)
        } else {
            let hosts: Box<[Box<str>]> = hosts.iter().map(|h| Box::from(h.as_str())).collect();
            self.virtual_service_hosts.insert(key, hosts)
        };
        previous
            .map(|hosts| hosts.iter().map(|h| h.to_string()).collect())
            .unwrap_or_default()
    }

    /// Records the hosts a Gateway serves (empty: deleted); returns the hosts it served.
    pub fn set_gateway_hosts(
        &mut self,
        namespace: &str,
        name: &str,
        hosts: &[String],
    ) -> Vec<String> {
        // Same memo as VirtualServices, under a namespace no Kubernetes namespace can have.
        self.set_virtual_service_hosts(&format!("Gateway:{namespace}"), name, hosts)
    }

    /// Every known MeshService.
    pub fn all(&self) -> impl Iterator<Item = &MeshKey> {
        self.meshservices.keys()
    }

    /// The MeshServices that may be affected by `touched`.
    pub fn affected(&self, touched: &Touched<'_>) -> BTreeSet<MeshKey> {
        let claiming_any = |hosts: &[String]| -> Vec<MeshKey> {
            self.meshservices
                .iter()
                .filter(|(_, interest)| {
                    interest
                        .hosts
                        .iter()
                        .any(|mine| hosts.iter().any(|theirs| hosts_overlap(mine, theirs)))
                })
                .map(|(key, _)| key.clone())
                .collect()
        };
        let mut out = BTreeSet::new();
        match touched {
            Touched::MeshService { key, hosts } => {
                out.extend(claiming_any(hosts));
                // Its own watch requeues it; what matters here is the others it competes with.
                out.remove(*key);
            }
            Touched::Gateway {
                namespace,
                name,
                contributors,
                hosts,
            } => {
                // An unmanaged Gateway serving a host on the same workload competes for it.
                out.extend(claiming_any(hosts));
                out.extend(
                    self.meshservices
                        .iter()
                        .filter(|(_, interest)| {
                            interest
                                .gateway
                                .as_ref()
                                .is_some_and(|(ns, n)| ns == namespace && n == name)
                        })
                        .map(|(key, _)| key.clone()),
                );
                out.extend(contributors.iter().cloned());
            }
            Touched::Service {
                namespace,
                name,
                owner,
            } => {
                out.extend(
                    self.meshservices
                        .iter()
                        .filter(|((ns, _), interest)| {
                            ns == namespace && interest.service_name == *name
                        })
                        .map(|(key, _)| key.clone()),
                );
                out.extend(owner.iter().cloned());
            }
            Touched::VirtualService {
                namespace,
                name,
                owner,
                hosts,
            } => {
                // Same name in the same namespace: the VirtualService a MeshService would own.
                let same_name = ((*namespace).to_string(), (*name).to_string());
                if self.meshservices.contains_key(&same_name) {
                    out.insert(same_name);
                }
                out.extend(owner.iter().cloned());
                out.extend(claiming_any(hosts));
            }
            Touched::ServiceEntry { hosts } => out.extend(claiming_any(hosts)),
        }
        // Only MeshServices we know of can be reconciled.
        out.retain(|key| self.meshservices.contains_key(key));
        out
    }
}

/// Parses `<namespace>/<name>` (the owner annotation and each contributors entry).
pub fn parse_owner_key(value: &str) -> Option<MeshKey> {
    let (namespace, name) = value.trim().split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (namespace.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> MeshKey {
        (ns.into(), name.into())
    }

    fn interest(hosts: &[&str], gateway: Option<(&str, &str)>, service: &str) -> Interest {
        Interest {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            gateway: gateway.map(|(ns, n)| (ns.into(), n.into())),
            service_name: service.into(),
        }
    }

    fn interests() -> Interests {
        let mut all = Interests::default();
        all.set_meshservice(
            key("a", "web"),
            interest(
                &["web.example.com"],
                Some(("istio-system", "public")),
                "web",
            ),
        );
        all.set_meshservice(
            key("b", "shop"),
            interest(&["*.shop.example.com"], Some(("b", "own")), "shop"),
        );
        all.set_meshservice(key("c", "api"), interest(&["api.example.com"], None, "api"));
        all
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn wildcards_overlap_the_hosts_they_cover() {
        assert!(hosts_overlap("*.shop.example.com", "eu.shop.example.com"));
        assert!(hosts_overlap("eu.shop.example.com", "*.shop.example.com"));
        assert!(hosts_overlap("*.example.com", "*.shop.example.com"));
        assert!(!hosts_overlap("*.shop.example.com", "shop.example.org"));
        assert!(!hosts_overlap("a.example.com", "b.example.com"));
    }

    #[test]
    fn a_gateway_event_requeues_its_referrers_and_its_contributors() {
        let touched = Touched::Gateway {
            namespace: "istio-system",
            name: "public",
            contributors: vec![key("c", "api")],
            hosts: vec![],
        };
        assert_eq!(
            interests().affected(&touched),
            BTreeSet::from([key("a", "web"), key("c", "api")])
        );
    }

    #[test]
    fn a_gateway_event_requeues_the_meshservices_claiming_a_host_it_serves() {
        let touched = Touched::Gateway {
            namespace: "elsewhere",
            name: "legacy",
            contributors: vec![],
            hosts: hosts(&["eu.shop.example.com"]),
        };
        assert_eq!(
            interests().affected(&touched),
            BTreeSet::from([key("b", "shop")])
        );
    }

    #[test]
    fn a_service_event_requeues_the_meshservice_wanting_that_name_in_that_namespace() {
        let touched = Touched::Service {
            namespace: "b",
            name: "shop",
            owner: None,
        };
        assert_eq!(
            interests().affected(&touched),
            BTreeSet::from([key("b", "shop")])
        );
        let elsewhere = Touched::Service {
            namespace: "a",
            name: "shop",
            owner: None,
        };
        assert!(interests().affected(&elsewhere).is_empty());
    }

    #[test]
    fn a_virtual_service_event_requeues_its_owner_its_namesake_and_host_claimants() {
        let touched = Touched::VirtualService {
            namespace: "c",
            name: "api",
            owner: None,
            hosts: hosts(&["eu.shop.example.com"]),
        };
        assert_eq!(
            interests().affected(&touched),
            BTreeSet::from([key("b", "shop"), key("c", "api")])
        );
    }

    #[test]
    fn a_meshservice_event_requeues_the_others_claiming_its_hosts_but_not_itself() {
        let mut all = interests();
        all.set_meshservice(
            key("d", "web2"),
            interest(&["web.example.com"], None, "web2"),
        );
        let touched = Touched::MeshService {
            key: &key("d", "web2"),
            hosts: hosts(&["web.example.com"]),
        };
        assert_eq!(all.affected(&touched), BTreeSet::from([key("a", "web")]));
    }

    #[test]
    fn unknown_meshservices_named_by_annotations_are_not_requeued() {
        let touched = Touched::Service {
            namespace: "z",
            name: "x",
            owner: Some(key("z", "gone")),
        };
        assert!(interests().affected(&touched).is_empty());
    }

    #[test]
    fn virtual_service_hosts_are_remembered_so_a_released_host_is_noticed() {
        let mut all = interests();
        assert!(
            all.set_virtual_service_hosts("x", "vs", &hosts(&["api.example.com"]))
                .is_empty()
        );
        let before = all.set_virtual_service_hosts("x", "vs", &hosts(&["other.example.com"]));
        assert_eq!(before, hosts(&["api.example.com"]));
        assert_eq!(
            all.set_virtual_service_hosts("x", "vs", &[]),
            hosts(&["other.example.com"])
        );
    }

    #[test]
    fn owner_keys_parse_only_as_namespace_slash_name() {
        assert_eq!(parse_owner_key("team-a/web"), Some(key("team-a", "web")));
        assert_eq!(parse_owner_key("web"), None);
        assert_eq!(parse_owner_key("/web"), None);
        assert_eq!(parse_owner_key("a/b/c"), None);
    }
}
