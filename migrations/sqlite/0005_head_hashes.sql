-- Each record's head row carries its current version's content hash and
-- input key, so that deciding a harvested page (and finding what a
-- re-harvest may skip) reads only the small head rows, not the versions.
-- A head without its version (which the store never leaves) gets an empty
-- hash, which no content matches, instead of failing the upgrade.
ALTER TABLE records ADD COLUMN content_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE records ADD COLUMN input_hash TEXT;
UPDATE records SET
    content_hash = COALESCE((SELECT v.content_hash FROM record_versions v
                             WHERE v.record_id = records.record_id
                               AND v.version = records.version), ''),
    input_hash = (SELECT v.input_hash FROM record_versions v
                  WHERE v.record_id = records.record_id AND v.version = records.version);
