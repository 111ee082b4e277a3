-- Sheaf's one model. Times are microseconds since the epoch (BIGINT),
-- JSON is TEXT, so both backends run the same statements.

-- One row: the change clock. Every write transaction locks it first, so
-- change sequences are handed out in commit order.
CREATE TABLE change_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    last_time BIGINT NOT NULL
);
INSERT INTO change_counter (id, seq, last_time) VALUES (1, 0, 0);

CREATE TABLE schemas (
    schema_id TEXT PRIMARY KEY,
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE schema_versions (
    schema_id TEXT NOT NULL REFERENCES schemas (schema_id),
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT,
    metadata_prefix TEXT NOT NULL,
    document BLOB NOT NULL,
    record TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (schema_id, version)
);
CREATE INDEX schema_versions_prefix ON schema_versions (metadata_prefix);

CREATE TABLE sources (
    source_id TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    config TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The current state of each record; its content lives in record_versions.
CREATE TABLE records (
    record_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    schema_id TEXT NOT NULL,
    source_id TEXT,
    changed_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX records_seq ON records (seq);
CREATE INDEX records_schema ON records (schema_id, seq);
CREATE INDEX records_source ON records (source_id, seq);
CREATE INDEX records_changed ON records (changed_at);

-- Immutable versions, tombstones included.
CREATE TABLE record_versions (
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    deleted BOOLEAN NOT NULL,
    schema_id TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    document BLOB NOT NULL,
    record TEXT NOT NULL,
    resources TEXT NOT NULL,
    acl TEXT NOT NULL,
    source_id TEXT,
    provenance TEXT,
    content_hash TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (record_id, version),
    FOREIGN KEY (schema_id, schema_version) REFERENCES schema_versions (schema_id, version)
);
CREATE INDEX record_versions_record_seq ON record_versions (record_id, seq);
CREATE INDEX record_versions_changed ON record_versions (changed_at);

CREATE TABLE version_sets (
    set_spec TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (set_spec, seq)
);
CREATE INDEX version_sets_seq ON version_sets (seq);

CREATE TABLE resources (
    resource_id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL UNIQUE
);

-- Which records currently describe which resources (IS_METADATA_FOR).
CREATE TABLE record_resources (
    resource_id BIGINT NOT NULL REFERENCES resources (resource_id),
    record_id TEXT NOT NULL REFERENCES records (record_id),
    PRIMARY KEY (resource_id, record_id)
);
CREATE INDEX record_resources_record ON record_resources (record_id);

CREATE TABLE acl_entries (
    record_id TEXT NOT NULL REFERENCES records (record_id),
    sid TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (record_id, sid)
);
CREATE INDEX acl_entries_sid ON acl_entries (sid, record_id);

CREATE TABLE harvest_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    window_from TEXT,
    window_until TEXT,
    checkpoint TEXT,
    response_date TEXT,
    seen BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    message TEXT
);
CREATE INDEX harvest_runs_source ON harvest_runs (source_id, run_id);
-- At most one running run per source.
CREATE UNIQUE INDEX harvest_runs_one_running ON harvest_runs (source_id) WHERE status = 'running';

CREATE TABLE rejections (
    rejection_id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    source_id TEXT,
    run_id BIGINT,
    identifier TEXT,
    schema_id TEXT,
    schema_version BIGINT,
    message TEXT NOT NULL,
    document BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX rejections_source ON rejections (source_id, rejection_id);

-- Harvest leases: one daemon per source at a time.
CREATE TABLE leases (
    source_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
