//! The same-namespace children of one MeshService: its Kubernetes Service and its VirtualService.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use meshservice_api::{MeshService, PortSpec, Protocol, ownership};

use crate::RenderError;
use crate::gateway::GatewayKey;
use crate::istio::{
    Destination, HttpMatchRequest, HttpRoute, L4MatchAttributes, PortSelector, RouteDestination,
    TcpRoute, TlsMatchAttributes, TlsRoute, VirtualService, VirtualServiceSpec,
};

/// The cluster DNS domain of route destinations. Istio's analyzers hard-code it too, so a destination
/// in another form would not resolve for them.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The pseudo-gateway name that binds a VirtualService to the sidecars of the mesh.
pub const MESH_GATEWAY: &str = "mesh";
/// The transport protocol of every Service port: all six MeshService protocols run over TCP.
pub const SERVICE_PORT_TRANSPORT: &str = "TCP";

/// What the renderer needs to derive one MeshService's Service and VirtualService.
#[derive(Clone, Copy, Debug)]
pub struct RenderInput<'a> {
    /// The MeshService, with `metadata.name` and `metadata.namespace` set.
    pub meshservice: &'a MeshService,
    /// `metadata.uid` of the MeshService, for the controller ownerReference of its children.
    pub owner_uid: &'a str,
    /// Hosts this MeshService lost to a conflict: none of them is rendered.
    pub excluded_hosts: &'a BTreeSet<String>,
}

/// The same-namespace children of one MeshService.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedMeshService {
    /// The Kubernetes Service named `spec.serviceName`.
    pub service: Service,
    /// The VirtualService named after the MeshService; `None` when every host is excluded, in which
    /// case an existing VirtualService of that name owned by this MeshService should be deleted.
    pub virtual_service: Option<VirtualService>,
}

/// Renders the Service and (unless every host is excluded) the VirtualService of one MeshService.
pub fn render_meshservice(input: &RenderInput<'_>) -> Result<RenderedMeshService, RenderError> {
    Ok(RenderedMeshService {
        service: render_service(input.meshservice, input.owner_uid)?,
        virtual_service: render_virtual_service(input)?,
    })
}

/// Name of the Service a MeshService owns: `spec.serviceName`.
pub fn service_name(meshservice: &MeshService) -> &str {
    &meshservice.spec.service_name
}

/// Name of the VirtualService a MeshService owns: the MeshService's own name.
pub fn virtual_service_name(meshservice: &MeshService) -> Result<&str, RenderError> {
    meshservice
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::MissingName)
}

/// `<serviceName>.<namespace>.svc.cluster.local`, the destination host of every route.
pub fn service_fqdn(meshservice: &MeshService) -> Result<String, RenderError> {
    let (namespace, _) = identity(meshservice)?;
    Ok(format!(
        "{}.{namespace}.svc.{CLUSTER_DOMAIN}",
        meshservice.spec.service_name
    ))
}

/// The hosts of the spec that are not excluded, sorted and de-duplicated.
pub fn accepted_hosts(meshservice: &MeshService, excluded_hosts: &BTreeSet<String>) -> Vec<String> {
    let accepted: BTreeSet<&String> = meshservice
        .spec
        .hosts
        .iter()
        .filter(|host| !excluded_hosts.contains(*host))
        .collect();
    accepted.into_iter().cloned().collect()
}

/// `(namespace, name)` of a MeshService; both are needed for every child it owns.
pub(crate) fn identity(meshservice: &MeshService) -> Result<(&str, &str), RenderError> {
    let name = meshservice
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::MissingName)?;
    let namespace =
        meshservice
            .metadata
            .namespace
            .as_deref()
            .ok_or_else(|| RenderError::MissingNamespace {
                name: name.to_string(),
            })?;
    Ok((namespace, name))
}

/// The port number as Istio's uint32 fields want it. The API schema already bounds it; the check
/// keeps an object that bypassed the schema from turning into a wrapped-around port.
pub(crate) fn port_number(owner: &str, port: &PortSpec) -> Result<u32, RenderError> {
    u32::try_from(port.port)
        .ok()
        .filter(|number| (1..=65535).contains(number))
        .ok_or_else(|| RenderError::PortOutOfRange {
            owner: owner.to_string(),
            port: port.port,
        })
}

/// Renders the Kubernetes Service of a MeshService.
pub fn render_service(meshservice: &MeshService, owner_uid: &str) -> Result<Service, RenderError> {
    let (namespace, name) = identity(meshservice)?;
    let owner = ownership::owner_key(namespace, name);
    let mut ports = Vec::with_capacity(meshservice.spec.ports.len());
    let mut names = BTreeSet::new();
    for port in sorted_ports(meshservice) {
        port_number(&owner, port)?;
        // The API's CEL rule sees only explicit names; a name equal to another port's default
        // (`web: http-8080` beside an unnamed 8080) would make the apiserver reject the Service.
        let port_name = port.effective_name();
        if !names.insert(port_name.clone()) {
            return Err(RenderError::DuplicatePortName {
                owner,
                name: port_name,
            });
        }
        ports.push(ServicePort {
            name: Some(port_name),
            port: port.port,
            target_port: Some(port.effective_target_port()),
            protocol: Some(SERVICE_PORT_TRANSPORT.to_string()),
            // A user-chosen port name need not follow Istio's `<protocol>-` convention; appProtocol
            // takes precedence in Istio's protocol selection, so the protocol is never guessed.
            app_protocol: Some(port.effective_protocol().port_name_prefix().to_string()),
            ..ServicePort::default()
        });
    }
    Ok(Service {
        metadata: child_metadata(meshservice, service_name(meshservice), owner_uid)?,
        spec: Some(ServiceSpec {
            ports: Some(ports),
            selector: Some(meshservice.spec.effective_selector()),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Renders the VirtualService of a MeshService; `None` when every host is excluded.
pub fn render_virtual_service(
    input: &RenderInput<'_>,
) -> Result<Option<VirtualService>, RenderError> {
    let meshservice = input.meshservice;
    let (namespace, name) = identity(meshservice)?;
    let owner = ownership::owner_key(namespace, name);
    let hosts = accepted_hosts(meshservice, input.excluded_hosts);
    if hosts.is_empty() {
        return Ok(None);
    }
    let gateway = GatewayKey::referenced_by(meshservice)?;
    let gateways = match &gateway {
        Some(key) => vec![key.to_string()],
        None => vec![MESH_GATEWAY.to_string()],
    };
    let destination_host = service_fqdn(meshservice)?;
    let mut spec = VirtualServiceSpec {
        hosts: hosts.clone(),
        gateways,
        export_to: meshservice.spec.export_to.clone(),
        ..VirtualServiceSpec::default()
    };
    for port in sorted_ports(meshservice) {
        let number = port_number(&owner, port)?;
        let route = vec![RouteDestination {
            destination: Destination {
                host: destination_host.clone(),
                port: PortSelector { number },
            },
        }];
        match route_kind(port.effective_protocol(), gateway.is_some()) {
            RouteKind::Http => spec.http.push(HttpRoute {
                name: port.effective_name(),
                matches: vec![HttpMatchRequest { port: number }],
                route,
            }),
            RouteKind::Tls => spec.tls.push(TlsRoute {
                matches: vec![TlsMatchAttributes {
                    port: number,
                    sni_hosts: hosts.clone(),
                }],
                route,
            }),
            RouteKind::Tcp => spec.tcp.push(TcpRoute {
                matches: vec![L4MatchAttributes { port: number }],
                route,
            }),
        }
    }
    let metadata = child_metadata(meshservice, name, input.owner_uid)?;
    Ok(Some(VirtualService::new(metadata, spec)))
}

/// Which route list of a VirtualService carries a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    Http,
    Tls,
    Tcp,
}

/// HTTPS is terminated by the gateway, so behind one it is routed as HTTP; inside the mesh nothing
/// terminates it and sidecars can only route it by SNI.
fn route_kind(protocol: Protocol, through_gateway: bool) -> RouteKind {
    // Exhaustive on purpose: a protocol added to the API must be given a route kind here.
    match protocol {
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => RouteKind::Http,
        Protocol::Https if through_gateway => RouteKind::Http,
        Protocol::Https | Protocol::Tls => RouteKind::Tls,
        Protocol::Tcp => RouteKind::Tcp,
    }
}

/// Ports in port-number order, so reordering the spec does not change the rendered bytes.
fn sorted_ports(meshservice: &MeshService) -> Vec<&PortSpec> {
    let mut ports: Vec<&PortSpec> = meshservice.spec.ports.iter().collect();
    ports.sort_by_key(|port| port.port);
    ports
}

/// Metadata of a Service or VirtualService: ownership labels, the owner annotation and a controller
/// ownerReference, so Kubernetes garbage-collects the child with its MeshService.
fn child_metadata(
    meshservice: &MeshService,
    child_name: &str,
    owner_uid: &str,
) -> Result<ObjectMeta, RenderError> {
    let (namespace, name) = identity(meshservice)?;
    let owner = ownership::owner_key(namespace, name);
    if owner_uid.is_empty() {
        return Err(RenderError::EmptyOwnerUid { owner });
    }
    Ok(ObjectMeta {
        name: Some(child_name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (
                ownership::MANAGED_BY_LABEL.to_string(),
                ownership::MANAGED_BY_VALUE.to_string(),
            ),
            (
                ownership::PART_OF_LABEL.to_string(),
                meshservice.spec.service_name.clone(),
            ),
        ])),
        annotations: Some(BTreeMap::from([(
            ownership::OWNER_ANNOTATION.to_string(),
            owner,
        )])),
        owner_references: Some(vec![OwnerReference {
            api_version: meshservice_api::API_VERSION.to_string(),
            kind: meshservice_api::KIND.to_string(),
            name: name.to_string(),
            uid: owner_uid.to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    })
}
