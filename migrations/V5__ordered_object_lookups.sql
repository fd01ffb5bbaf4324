-- V5: the per-object lookup indexes of the lists a rule reports in order (destinations, gateway
-- references, hosts) also hold the list position. A targeted check of one VirtualService then
-- reads them in order from the index; with (obj) alone SQLite sorted them in a temporary b-tree
-- on every run, a few microseconds of a watch event.
DROP INDEX dest_obj;
CREATE INDEX dest_obj ON dest (obj, idx);
DROP INDEX vs_gateway_obj;
CREATE INDEX vs_gateway_obj ON vs_gateway (obj, idx);
DROP INDEX vs_host_obj;
CREATE INDEX vs_host_obj ON vs_host (obj, idx);
