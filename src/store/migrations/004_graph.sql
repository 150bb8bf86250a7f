-- The knowledge graph's source of truth: a per-tenant log of graph write batches. Every process
-- keeps its own DuckDB projection of it (src/graph) and catches up by reading `seq > position`.
-- Like the event log, the counter row is updated inside the writing transaction, so a tenant's
-- batches commit in seq order and a reader can never skip one that commits late.
CREATE TABLE graph_streams (
  tenant_id text PRIMARY KEY,
  seq       bigint NOT NULL
);

CREATE TABLE graph_events (
  tenant_id  text NOT NULL,
  seq        bigint NOT NULL,
  -- One batch of operations (upserts, deletes, invalidations, cascade, purge), applied atomically.
  ops        jsonb NOT NULL,
  -- Set by job processors (e.g. 'graph.extract:<event id>'): a job that runs twice writes once.
  job_key    text,
  actor      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX graph_events_job_key ON graph_events (tenant_id, job_key) WHERE job_key IS NOT NULL;

ALTER TABLE graph_streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_streams FORCE ROW LEVEL SECURITY;
ALTER TABLE graph_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE graph_events FORCE ROW LEVEL SECURITY;
CREATE POLICY graph_streams_tenant ON graph_streams
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY graph_events_tenant ON graph_events
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON graph_streams TO aeterna_app;
-- DELETE is reserved for compacting the log below a snapshot (not built yet).
GRANT SELECT, INSERT, DELETE ON graph_events TO aeterna_app;
