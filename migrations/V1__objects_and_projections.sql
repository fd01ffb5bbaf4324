-- V1: every object the engine holds, and the columns the rules read from it.
-- One row per object in `object`; the per-kind projections reference it by `obj`.
-- The engine deletes an object's projection rows itself (no foreign-key cascades:
-- they cost more than they save on the batch path).

CREATE TABLE object (
    id           INTEGER PRIMARY KEY,
    grp          TEXT NOT NULL,          -- API group ('' for core)
    kind         TEXT NOT NULL,
    ns           TEXT NOT NULL,          -- '' for cluster-scoped kinds (Namespace)
    name         TEXT NOT NULL,
    api_version  TEXT NOT NULL,
    created      TEXT,                   -- metadata.creationTimestamp (RFC 3339)
    owner        TEXT,                   -- annotation mesh.istio.operator/owner
    contributors TEXT,                   -- annotation mesh.istio.operator/contributors
    managed      INTEGER NOT NULL DEFAULT 0, -- label app.kubernetes.io/managed-by = istio-integrity-operator
    suppress     TEXT,                   -- annotation galley.istio.io/analyze-suppress
    file         TEXT,
    line         INTEGER,
    UNIQUE (grp, kind, ns, name)
);
CREATE INDEX object_kind_ns ON object (kind, ns, name);

-- exportTo entries as written, '.' resolved to the object's namespace (VS, DR, SE; Service annotation).
CREATE TABLE export_to (obj INTEGER NOT NULL, scope TEXT NOT NULL, raw TEXT NOT NULL);
CREATE INDEX export_to_obj ON export_to (obj);

-- VirtualService
CREATE TABLE vs (
    obj        INTEGER PRIMARY KEY,
    mesh       INTEGER NOT NULL,          -- bound to the `mesh` gateway (no gateways, or `mesh` listed)
    export_all INTEGER NOT NULL           -- exportTo empty or containing '*'
);
CREATE TABLE vs_host (obj INTEGER NOT NULL, idx INTEGER NOT NULL, host TEXT NOT NULL, fqdn TEXT NOT NULL, wild INTEGER NOT NULL);
CREATE INDEX vs_host_obj ON vs_host (obj);
CREATE INDEX vs_host_fqdn ON vs_host (fqdn);
CREATE INDEX vs_host_wild ON vs_host (wild) WHERE wild = 1;
CREATE TABLE vs_gateway (obj INTEGER NOT NULL, idx INTEGER NOT NULL, ref TEXT NOT NULL, gw_ns TEXT NOT NULL, gw_name TEXT NOT NULL);
CREATE INDEX vs_gateway_obj ON vs_gateway (obj);
CREATE INDEX vs_gateway_target ON vs_gateway (gw_ns, gw_name);
-- (scope, fqdn) keys of mesh-bound VirtualServices, duplicates kept (IST0109)
CREATE TABLE mesh_host (obj INTEGER NOT NULL, scope TEXT NOT NULL, fqdn TEXT NOT NULL, wild INTEGER NOT NULL);
CREATE INDEX mesh_host_obj ON mesh_host (obj);
CREATE INDEX mesh_host_key ON mesh_host (fqdn, scope);
CREATE INDEX mesh_host_wild ON mesh_host (wild) WHERE wild = 1;
-- route and mirror destinations
CREATE TABLE dest (
    obj    INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    mirror INTEGER NOT NULL,
    host   TEXT NOT NULL,                 -- as written
    fqdn   TEXT NOT NULL,                 -- Istio ConvertHostToFQDN in the VS namespace
    port   INTEGER,
    subset TEXT,
    skey   TEXT NOT NULL,                 -- 'ns/name' DestinationRule key (GetResourceNameFromHost)
    path   TEXT NOT NULL                  -- JSON pointer of the destination object
);
CREATE INDEX dest_obj ON dest (obj);
CREATE INDEX dest_fqdn ON dest (fqdn);

-- Gateway (networking.istio.io) and Gateway API Gateway listeners
CREATE TABLE gateway (obj INTEGER PRIMARY KEY, sel TEXT NOT NULL, sel_n INTEGER NOT NULL, n_servers INTEGER NOT NULL);
CREATE INDEX gateway_sel ON gateway (sel);
CREATE TABLE gw_server (
    obj        INTEGER NOT NULL,
    sidx       INTEGER NOT NULL,          -- server index
    hidx       INTEGER NOT NULL,          -- host index within the server
    port       INTEGER,                   -- NULL for Gateway API listeners
    protocol   TEXT,
    bind       TEXT NOT NULL,
    raw        TEXT NOT NULL,             -- host as written, with its namespace prefix
    vis_ns     TEXT,                      -- NULL: visible to every namespace; else only to VirtualServices there
    host       TEXT NOT NULL,             -- host without prefix (after Istio's sanitising)
    wild       INTEGER NOT NULL,
    credential TEXT
);
CREATE INDEX gw_server_obj ON gw_server (obj);
CREATE INDEX gw_server_raw ON gw_server (raw, port);
CREATE INDEX gw_server_wild ON gw_server (port) WHERE wild = 1;

-- selectors (Gateway selector, Sidecar workloadSelector, Service selector) and Pod labels
CREATE TABLE selector (obj INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX selector_obj ON selector (obj);
CREATE TABLE label (obj INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX label_obj ON label (obj);
CREATE INDEX label_kv ON label (key, value);

-- (selector owner, Pod) pairs where every selector label is on the Pod (non-empty selectors only;
-- an empty selector matches every Pod and is handled by the rules).
CREATE VIEW sel_pod AS
SELECT s.obj AS sel_obj, l.obj AS pod
FROM selector s JOIN label l ON l.key = s.key AND l.value = s.value
GROUP BY s.obj, l.obj
HAVING count(*) = (SELECT count(*) FROM selector s2 WHERE s2.obj = s.obj);

-- Services and ServiceEntries as destinations (Istio's InitServiceEntryHostMap)
CREATE TABLE provider (
    obj    INTEGER NOT NULL,
    scope  TEXT NOT NULL,                 -- '*' or a namespace
    raw    TEXT NOT NULL,                 -- host as written (Service: its name)
    fqdn   TEXT NOT NULL,
    wild   INTEGER NOT NULL,
    suffix TEXT                           -- wildcard hosts: the host without its leading '*'
);
CREATE INDEX provider_obj ON provider (obj);
CREATE INDEX provider_key ON provider (fqdn, scope);
CREATE INDEX provider_wild ON provider (wild) WHERE wild = 1;
CREATE TABLE port (obj INTEGER NOT NULL, number INTEGER NOT NULL, name TEXT, protocol TEXT, target INTEGER);
CREATE INDEX port_obj ON port (obj);
CREATE TABLE service (obj INTEGER PRIMARY KEY, sel_n INTEGER NOT NULL);

-- DestinationRule
CREATE TABLE dr (obj INTEGER PRIMARY KEY, host TEXT NOT NULL, fqdn TEXT NOT NULL, skey TEXT NOT NULL, wild INTEGER NOT NULL, export_all INTEGER NOT NULL, n_subsets INTEGER NOT NULL);
CREATE INDEX dr_skey ON dr (skey);
CREATE INDEX dr_fqdn ON dr (fqdn);
CREATE TABLE dr_subset (obj INTEGER NOT NULL, name TEXT NOT NULL);
CREATE INDEX dr_subset_obj ON dr_subset (obj);

-- Sidecar
CREATE TABLE sidecar (obj INTEGER PRIMARY KEY, sel_n INTEGER NOT NULL);

-- Secret (name, namespace and type only: never the data)
CREATE TABLE secret (obj INTEGER PRIMARY KEY, type TEXT);
