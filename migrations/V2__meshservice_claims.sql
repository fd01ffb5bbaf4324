-- V2: MeshService projections, the objects that could not be projected, and the claim index.

CREATE TABLE ms (
    obj          INTEGER PRIMARY KEY,
    service_name TEXT NOT NULL,
    gw_ns        TEXT,                    -- NULL: no gateway (mesh only)
    gw_name      TEXT,
    gw_managed   INTEGER NOT NULL,
    credential   TEXT
);
CREATE INDEX ms_service_name ON ms (service_name);
CREATE INDEX ms_gateway ON ms (gw_ns, gw_name);
CREATE TABLE ms_host (obj INTEGER NOT NULL, idx INTEGER NOT NULL, host TEXT NOT NULL, fqdn TEXT NOT NULL, wild INTEGER NOT NULL);
CREATE INDEX ms_host_obj ON ms_host (obj);
CREATE INDEX ms_host_fqdn ON ms_host (fqdn);
CREATE TABLE ms_port (obj INTEGER NOT NULL, port INTEGER NOT NULL, protocol TEXT NOT NULL);
CREATE INDEX ms_port_obj ON ms_port (obj);

-- An object that could not be projected (MSH0001): kept so the finding survives until it is fixed.
CREATE TABLE undecodable (obj INTEGER PRIMARY KEY, message TEXT NOT NULL);

-- Owner lookups: objects owned by a MeshService, by owner key.
CREATE INDEX object_owner ON object (owner) WHERE owner IS NOT NULL;
