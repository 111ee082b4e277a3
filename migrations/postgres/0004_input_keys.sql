-- The harvester's key of what a version was derived from (source, schema,
-- resource rule, OAI identifier, document): an unchanged re-harvest is
-- recognised by it before anything is derived or validated. NULL for
-- versions not written by a harvest.
ALTER TABLE record_versions ADD COLUMN input_hash TEXT;
