-- A run that restarts a window sees some records twice; a record it
-- rejects again is recorded once per run, found through this index.
CREATE INDEX rejections_run ON rejections (run_id, identifier);
