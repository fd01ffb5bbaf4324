-- V7: the lookup indexes the whole-mesh check probes once per destination, gateway reference or
-- ServiceEntry also hold the columns those probes read, so the probe never reads the table row
-- (a second b-tree descent, most of the cost of a probe at 100k rows). Measured at 100k
-- VirtualServices: the full check ~95 ms less, the batch ingest's index build ~25 ms more.

-- a destination's providers by host: their object, then that object's port numbers
DROP INDEX provider_key;
CREATE INDEX provider_key ON provider (fqdn, scope, obj);
DROP INDEX port_obj;
CREATE INDEX port_obj ON port (obj, number);
-- a referenced Gateway's server hosts, and the VirtualService's hosts they must match
DROP INDEX gw_server_obj;
CREATE INDEX gw_server_obj ON gw_server (obj, host, vis_ns);
DROP INDEX vs_host_obj;
CREATE INDEX vs_host_obj ON vs_host (obj, idx, host);
-- the few objects carrying a suppress annotation (finding_counts reads them all up front): a
-- partial index, so that it reads those rather than every object (17 ms at 100k); an object
-- without the annotation only has the predicate evaluated on insert
CREATE INDEX object_suppress ON object (suppress) WHERE suppress IS NOT NULL;
