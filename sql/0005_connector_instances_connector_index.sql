-- The index revision 0001 put on connector_instances (connector_id, created_at,
-- connector_instance_id) made the application's own INSERT fail when the two ids together were
-- longer than a btree entry holds (2,704 bytes after compression). A hash index holds a 4-byte
-- hash whatever the id's length, and still finds a connector's connections (the foreign key's
-- check when a connector is deleted, the application's own lookups). Built CONCURRENTLY: a live
-- database keeps accepting writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS connector_instances_connector_idx
    ON connector_instances USING hash (connector_id)
