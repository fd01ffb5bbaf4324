-- V8: the wildcard MeshService hosts, for the targeted check of MSH0201
-- (meshservice-host-claim-lost). A VirtualService, Gateway or MeshService event looks up the
-- MeshService claims overlapping its hosts: equal FQDNs through ms_host_fqdn, and wildcard claims
-- through this index (as vs_host_wild for VirtualServices), instead of scanning every claim.
CREATE INDEX ms_host_wild ON ms_host (wild) WHERE wild = 1;
