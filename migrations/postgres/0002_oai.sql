-- Secrets shared by every process on one database, created once by the
-- first process that needs them (the OAI-PMH resumption-token key), so
-- tokens stay valid across restarts and across replicas.
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
