-- Core tables: memories, the per-tenant event log (outbox) and its sequence counters.
-- The same file runs on PostgreSQL and PGlite.

-- The role the application runs as. It owns nothing and has no BYPASSRLS, so row-level security
-- binds it. Creating it needs CREATEROLE; a deployment without that creates it beforehand.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aeterna_app') THEN
    BEGIN
      CREATE ROLE aeterna_app NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- another process created it between our check and our create
    END;
  END IF;
END
$$;

-- pgvector where the server has it; without it embeddings are stored as real[] and searched by
-- an exact scan (see src/vector).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    CREATE EXTENSION IF NOT EXISTS vector;
  END IF;
END
$$;

CREATE TABLE memories (
  id               uuid PRIMARY KEY,
  tenant_id        text NOT NULL,
  layer            text NOT NULL CHECK (layer IN ('agent', 'user', 'session', 'project', 'team', 'org', 'company')),
  scope_id         text NOT NULL,
  content          text NOT NULL,
  metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags             text[] NOT NULL DEFAULT '{}',
  importance       real NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
  embedding_model  text,
  content_hash     text NOT NULL,
  version          integer NOT NULL DEFAULT 1,
  access_count     integer NOT NULL DEFAULT 0,
  last_accessed_at timestamptz,
  created_by       jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz
);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
    ALTER TABLE memories ADD COLUMN embedding vector;
  ELSE
    ALTER TABLE memories ADD COLUMN embedding real[];
  END IF;
END
$$;

-- ids are UUIDv7 (time-ordered), so (tenant, layer, scope, id) serves listing newest first.
CREATE INDEX memories_scope_idx ON memories (tenant_id, layer, scope_id, id) WHERE deleted_at IS NULL;
CREATE INDEX memories_tenant_idx ON memories (tenant_id, id) WHERE deleted_at IS NULL;
CREATE INDEX memories_tags_idx ON memories USING gin (tags) WHERE deleted_at IS NULL;

CREATE TABLE tenant_streams (
  tenant_id  text PRIMARY KEY,
  seq        bigint NOT NULL,
  -- changes whenever a tenant's history is lost, so clients know their seq is meaningless
  epoch      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
  tenant_id  text NOT NULL,
  seq        bigint NOT NULL,
  id         uuid NOT NULL UNIQUE,
  type       text NOT NULL,
  actor      jsonb NOT NULL,
  data       jsonb NOT NULL,
  trace_id   text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, seq)
);

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_streams FORCE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;

-- With no app.tenant_id set, current_setting(..., true) is NULL and every row is hidden.
CREATE POLICY memories_tenant ON memories
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_streams_tenant ON tenant_streams
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY events_tenant ON events
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- The event log is append-only for the application: no UPDATE or DELETE grant.
GRANT SELECT, INSERT, UPDATE ON memories TO aeterna_app;
GRANT SELECT, INSERT, UPDATE ON tenant_streams TO aeterna_app;
GRANT SELECT, INSERT ON events TO aeterna_app;
