-- V4: per object, a hash of the rows each of its projection tables holds (8 bytes per table, in the
-- engine's table order for its kind). An upsert rewrites only the tables whose rows changed: most
-- watch events change status or metadata the rules do not read, and deleting and re-inserting
-- identical rows was most of an event's cost. NULL: unknown, every table is rewritten.
ALTER TABLE object ADD COLUMN proj_hash BLOB;
