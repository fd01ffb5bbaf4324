-- V9: the one-row projections of the two most numerous kinds become columns of `object`: a batch
-- of N VirtualServices and N Services wrote 2N rows into `vs` and `service` for three integers
-- (about a twentieth of a bulk load's instructions). NULL for objects of other kinds.
-- (`sidecar` and `secret` stay tables: few objects, and their rules read them as tables.)
ALTER TABLE object ADD COLUMN vs_mesh INTEGER;        -- VirtualService: bound to the `mesh` gateway
ALTER TABLE object ADD COLUMN vs_export_all INTEGER;  -- VirtualService: exportTo empty or containing '*'
ALTER TABLE object ADD COLUMN svc_sel_n INTEGER;      -- Service: number of selector labels

UPDATE object SET (vs_mesh, vs_export_all) = (SELECT v.mesh, v.export_all FROM vs v WHERE v.obj = object.id)
WHERE id IN (SELECT obj FROM vs);
UPDATE object SET svc_sel_n = (SELECT s.sel_n FROM service s WHERE s.obj = object.id)
WHERE id IN (SELECT obj FROM service);

DROP TABLE vs;
DROP TABLE service;
