-- The control plane's store. Kept to what PostgreSQL and CockroachDB both run: no LISTEN/NOTIFY,
-- no advisory locks; times are Unix milliseconds and every integer is BIGINT (CockroachDB's INT
-- is 64 bits, PostgreSQL's 32: BIGINT is the same on both).

-- Organizations: the settings of the document that have no table of their own (auth, cors, tls,
-- rate_limit, ...), as JSON. Name, domains, upstreams, routes, policies and consumers are rows.
CREATE TABLE IF NOT EXISTS organizations (
    name TEXT PRIMARY KEY,
    settings JSONB NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS domains (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (org, domain)
);

CREATE TABLE IF NOT EXISTS upstreams (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    document JSONB NOT NULL,
    PRIMARY KEY (org, name)
);

-- Routes keep the document's order (it decides which of two equal patterns is tried first).
CREATE TABLE IF NOT EXISTS routes (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position BIGINT NOT NULL,
    document JSONB NOT NULL,
    PRIMARY KEY (org, name)
);

CREATE TABLE IF NOT EXISTS policies (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    document JSONB NOT NULL,
    PRIMARY KEY (org, name)
);

CREATE TABLE IF NOT EXISTS consumers (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position BIGINT NOT NULL,
    document JSONB NOT NULL,
    PRIMARY KEY (org, id)
);

-- Uploaded certificates (the private key too: nodes need it; the database is the secret store).
CREATE TABLE IF NOT EXISTS certificates (
    org TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    domains JSONB NOT NULL,
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    not_after TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (org, name)
);

-- Every accepted change: the full bundle that nodes load.
CREATE TABLE IF NOT EXISTS config_versions (
    version BIGINT PRIMARY KEY,
    bundle JSONB NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Who made each version, when, what, and the RFC 6902 patch from the previous organizations.
CREATE TABLE IF NOT EXISTS audit_log (
    version BIGINT PRIMARY KEY REFERENCES config_versions (version),
    who TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    org TEXT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    diff JSONB NOT NULL
);

-- API tokens: the SHA-256 of the secret, never the secret. org NULL would be an operator
-- token; the operator's own token lives in control.yaml.
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    org TEXT REFERENCES organizations (name) ON DELETE CASCADE,
    hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

-- The service registry: instances that registered and heartbeat within their TTL.
CREATE TABLE IF NOT EXISTS registry_instances (
    service TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (service, id)
);
