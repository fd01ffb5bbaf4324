//! The managed shared Gateway: one per (namespace, name), aggregating the accepted host claims of
//! every MeshService that references it with `managed: true`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use meshservice_api::{MeshService, Protocol, ownership};

use crate::RenderError;
use crate::istio::{Gateway, GatewaySpec, Server, ServerPort, ServerTlsMode, ServerTlsSettings};
use crate::meshservice::{accepted_hosts, identity, port_number};

/// Label key of the default gateway workload selector.
pub const DEFAULT_GATEWAY_SELECTOR_KEY: &str = "istio";
/// Label value of the default gateway workload selector: Istio's default ingress gateway.
pub const DEFAULT_GATEWAY_SELECTOR_VALUE: &str = "ingressgateway";

/// The (namespace, name) of a Gateway; displays as `<namespace>/<name>`, the form a VirtualService's
/// `gateways` entry takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayKey {
    /// Namespace of the Gateway.
    pub namespace: String,
    /// Name of the Gateway.
    pub name: String,
}

impl GatewayKey {
    /// The gateway a MeshService references, managed or not, with its namespace defaulted to the
    /// MeshService's; `None` when it has no gateway.
    pub fn referenced_by(meshservice: &MeshService) -> Result<Option<GatewayKey>, RenderError> {
        let Some(gateway) = &meshservice.spec.gateway else {
            return Ok(None);
        };
        let (namespace, _) = identity(meshservice)?;
        Ok(Some(GatewayKey {
            namespace: gateway.effective_namespace(namespace).to_string(),
            name: gateway.name.clone(),
        }))
    }

    /// The gateway a MeshService references only when it asks the operator to manage it: the key
    /// by which the reconciler groups the contributors of one shared Gateway.
    pub fn managed_by(meshservice: &MeshService) -> Result<Option<GatewayKey>, RenderError> {
        match &meshservice.spec.gateway {
            Some(gateway) if gateway.managed => GatewayKey::referenced_by(meshservice),
            _ => Ok(None),
        }
    }
}

impl fmt::Display for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One MeshService's claim on a shared Gateway.
#[derive(Clone, Copy, Debug)]
pub struct Contribution<'a> {
    /// A MeshService whose `spec.gateway` names the Gateway with `managed: true`.
    pub meshservice: &'a MeshService,
    /// Hosts it lost to a conflict: they are not served for it.
    pub excluded_hosts: &'a BTreeSet<String>,
}

/// Settings of managed Gateways that the MeshService API does not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayOptions {
    /// Labels of the gateway workload pods. Default: `istio: ingressgateway`.
    pub selector: BTreeMap<String, String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            selector: BTreeMap::from([(
                DEFAULT_GATEWAY_SELECTOR_KEY.to_string(),
                DEFAULT_GATEWAY_SELECTOR_VALUE.to_string(),
            )]),
        }
    }
}

/// What to do with a managed Gateway.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayPlan {
    /// Apply this Gateway (boxed: it dwarfs the other variant).
    Apply(Box<Gateway>),
    /// No contributor has a host left on it: delete the Gateway (if it exists and is ours).
    Delete(GatewayKey),
}

/// The plan for a managed Gateway and the claims that could not be rendered into it.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayRendering {
    /// Apply or delete.
    pub plan: GatewayPlan,
    /// Ports of contributors that are not served, with the reason; sorted by contributor and port.
    pub dropped_claims: Vec<DroppedClaim>,
}

/// A contributor's port that the Gateway does not serve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DroppedClaim {
    /// `<namespace>/<name>` of the contributing MeshService.
    pub contributor: String,
    /// The port number it asked for.
    pub port: u32,
    /// The protocol it asked for.
    pub protocol: Protocol,
    /// Why the port is not served.
    pub reason: DropReason,
}

/// Why a contributor's port is not served by the Gateway.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// An HTTPS port without `gateway.tls.credentialName`: Istio rejects a `SIMPLE` server without a
    /// certificate, and one invalid server would take the whole shared Gateway down.
    MissingCredential,
    /// The port number is already served with another protocol by an older contributor.
    ProtocolConflict {
        /// `<namespace>/<name>` of the contributor whose protocol the port keeps.
        winner: String,
        /// The protocol the port keeps.
        winning_protocol: Protocol,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::MissingCredential => {
                f.write_str("an HTTPS server needs spec.gateway.tls.credentialName")
            }
            DropReason::ProtocolConflict {
                winner,
                winning_protocol,
            } => write!(
                f,
                "the port is already served as {winning_protocol} for the older MeshService {winner}"
            ),
        }
    }
}

impl fmt::Display for DroppedClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port {} ({}) of MeshService {} is not served: {}",
            self.port, self.protocol, self.contributor, self.reason
        )
    }
}

/// Identity of one server: Istio keeps one protocol per port, and HTTPS servers on one port are
/// told apart by certificate (SNI), so each credential gets its own server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ServerKey {
    port: u32,
    protocol: Protocol,
    credential_name: Option<String>,
}

/// Renders the managed Gateway `gateway` from its contributions.
///
/// Rules, all independent of the order of `contributions`:
/// - Contributors are ranked oldest first (`metadata.creationTimestamp`, missing ones last), then by
///   `<namespace>/<name>`. Contributors being deleted (`deletionTimestamp` set) are ignored.
/// - Each (port, protocol) gets one server holding the sorted union of the contributors' accepted
///   hosts, each written `<contributor-namespace>/<host>`; HTTPS gets one server per credential.
/// - A port number keeps the protocol of its highest-ranked contributor; the other protocols'
///   claims on it are dropped with [`DropReason::ProtocolConflict`]. HTTPS claims without a
///   credential are dropped first, with [`DropReason::MissingCredential`].
/// - A namespaced host served twice on one port (two HTTPS credentials) stays with the higher rank.
/// - No host left: [`GatewayPlan::Delete`].
///
/// Not decided here: opaque TCP is routed by port alone, so when two contributors put TCP on one
/// port both are rendered into the one server, but only one VirtualService's `tcp` route takes
/// effect at the gateway. Telling which is a claim conflict for the integrity engine to report.
/// HTTP, HTTP2 and GRPC count as different protocols, although Istio could merge them on a port.
pub fn render_gateway(
    gateway: &GatewayKey,
    contributions: &[Contribution<'_>],
    options: &GatewayOptions,
) -> Result<GatewayRendering, RenderError> {
    let ranked = rank_contributors(gateway, contributions)?;

    let mut servers: BTreeMap<ServerKey, BTreeSet<String>> = BTreeMap::new();
    let mut port_owner: BTreeMap<u32, (Protocol, String)> = BTreeMap::new();
    let mut served: BTreeMap<(u32, String), ServerKey> = BTreeMap::new();
    let mut contributors: BTreeSet<String> = BTreeSet::new();
    let mut dropped_claims = Vec::new();

    for contributor in &ranked {
        let hosts = accepted_hosts(contributor.meshservice, contributor.excluded_hosts);
        if hosts.is_empty() {
            continue;
        }
        let credential_name = contributor
            .meshservice
            .spec
            .gateway
            .as_ref()
            .and_then(|gateway_ref| gateway_ref.tls.as_ref())
            .map(|tls| tls.credential_name.clone());
        let mut ports: Vec<_> = contributor.meshservice.spec.ports.iter().collect();
        ports.sort_by_key(|port| port.port);
        for port in ports {
            let number = port_number(&contributor.owner, port)?;
            let protocol = port.effective_protocol();
            let dropped = |reason| DroppedClaim {
                contributor: contributor.owner.clone(),
                port: number,
                protocol,
                reason,
            };
            if protocol == Protocol::Https && credential_name.is_none() {
                dropped_claims.push(dropped(DropReason::MissingCredential));
                continue;
            }
            let (winning_protocol, winner) = port_owner
                .entry(number)
                .or_insert_with(|| (protocol, contributor.owner.clone()))
                .clone();
            if winning_protocol != protocol {
                dropped_claims.push(dropped(DropReason::ProtocolConflict {
                    winner,
                    winning_protocol,
                }));
                continue;
            }
            let key = ServerKey {
                port: number,
                protocol,
                credential_name: if protocol == Protocol::Https {
                    credential_name.clone()
                } else {
                    None
                },
            };
            for host in &hosts {
                let namespaced_host = format!("{}/{host}", contributor.namespace);
                let holder = served
                    .entry((number, namespaced_host.clone()))
                    .or_insert_with(|| key.clone());
                // The same claim from a same-namespace MeshService is shared, not taken over.
                if *holder == key {
                    servers
                        .entry(key.clone())
                        .or_default()
                        .insert(namespaced_host);
                    contributors.insert(contributor.owner.clone());
                }
            }
        }
    }
    dropped_claims.sort();

    if servers.is_empty() {
        return Ok(GatewayRendering {
            plan: GatewayPlan::Delete(gateway.clone()),
            dropped_claims,
        });
    }
    let servers = servers
        .into_iter()
        .map(|(key, hosts)| server(key, hosts))
        .collect();
    let metadata = ObjectMeta {
        name: Some(gateway.name.clone()),
        namespace: Some(gateway.namespace.clone()),
        labels: Some(BTreeMap::from([(
            ownership::MANAGED_BY_LABEL.to_string(),
            ownership::MANAGED_BY_VALUE.to_string(),
        )])),
        annotations: Some(BTreeMap::from([(
            ownership::CONTRIBUTORS_ANNOTATION.to_string(),
            contributors.into_iter().collect::<Vec<_>>().join(","),
        )])),
        ..ObjectMeta::default()
    };
    let spec = GatewaySpec {
        selector: options.selector.clone(),
        servers,
    };
    Ok(GatewayRendering {
        plan: GatewayPlan::Apply(Box::new(Gateway::new(metadata, spec))),
        dropped_claims,
    })
}

/// Name of the port of a server. Istio requires server port names to be unique within a Gateway;
/// the credential tells apart the HTTPS servers that share a port number.
pub fn server_port_name(port: u32, protocol: Protocol, credential_name: Option<&str>) -> String {
    match credential_name {
        Some(credential) => format!("{}-{port}-{credential}", protocol.port_name_prefix()),
        None => format!("{}-{port}", protocol.port_name_prefix()),
    }
}

fn server(key: ServerKey, hosts: BTreeSet<String>) -> Server {
    let tls = match key.protocol {
        Protocol::Https => Some(ServerTlsSettings {
            mode: ServerTlsMode::Simple,
            credential_name: key.credential_name.clone(),
        }),
        Protocol::Tls => Some(ServerTlsSettings {
            mode: ServerTlsMode::Passthrough,
            credential_name: None,
        }),
        Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Tcp => None,
    };
    Server {
        port: ServerPort {
            number: key.port,
            protocol: key.protocol,
            name: server_port_name(key.port, key.protocol, key.credential_name.as_deref()),
        },
        hosts: hosts.into_iter().collect(),
        tls,
    }
}

/// A validated contribution with its identity resolved.
struct RankedContributor<'a> {
    meshservice: &'a MeshService,
    excluded_hosts: &'a BTreeSet<String>,
    namespace: &'a str,
    owner: String,
}

/// Validates the contributions and orders them oldest first, so the result never depends on the
/// order the caller listed them in.
fn rank_contributors<'a>(
    gateway: &GatewayKey,
    contributions: &[Contribution<'a>],
) -> Result<Vec<RankedContributor<'a>>, RenderError> {
    let mut seen = BTreeSet::new();
    let mut ranked: Vec<(Option<&Time>, RankedContributor<'a>)> =
        Vec::with_capacity(contributions.len());
    for contribution in contributions {
        let (namespace, name) = identity(contribution.meshservice)?;
        let owner = ownership::owner_key(namespace, name);
        if GatewayKey::managed_by(contribution.meshservice)?.as_ref() != Some(gateway) {
            return Err(RenderError::NotAContributor {
                contributor: owner,
                gateway: gateway.clone(),
            });
        }
        if !seen.insert(owner.clone()) {
            return Err(RenderError::DuplicateContributor {
                contributor: owner,
                gateway: gateway.clone(),
            });
        }
        if contribution
            .meshservice
            .metadata
            .deletion_timestamp
            .is_some()
        {
            continue;
        }
        let created = contribution
            .meshservice
            .metadata
            .creation_timestamp
            .as_ref();
        ranked.push((
            created,
            RankedContributor {
                meshservice: contribution.meshservice,
                excluded_hosts: contribution.excluded_hosts,
                namespace,
                owner,
            },
        ));
    }
    ranked.sort_by(|(created_a, a), (created_b, b)| {
        (created_a.is_none(), created_a, &a.owner).cmp(&(created_b.is_none(), created_b, &b.owner))
    });
    Ok(ranked
        .into_iter()
        .map(|(_, contributor)| contributor)
        .collect())
}
