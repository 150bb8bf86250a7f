-- The relay: which events of each tenant have been delivered live, and a role that may read
-- every tenant's stream position (and nothing else) to find undelivered events.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aeterna_system') THEN
    BEGIN
      CREATE ROLE aeterna_system NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END IF;
  -- A non-superuser login must be a member to SET ROLE to it; a superuser needs nothing.
  BEGIN
    EXECUTE format('GRANT aeterna_system TO %I', current_user);
  EXCEPTION WHEN OTHERS THEN
    NULL;
  END;
END
$$;

-- Kept apart from tenant_streams so the relay's bookkeeping never waits on a writer's lock of
-- the counter row. Stored in the database, beside the events, so a node that takes over a
-- partition resumes exactly where the last owner stopped, whatever happened to Redis.
CREATE TABLE relay_positions (
  tenant_id  text PRIMARY KEY,
  seq        bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE relay_positions ENABLE ROW LEVEL SECURITY;
ALTER TABLE relay_positions FORCE ROW LEVEL SECURITY;
CREATE POLICY relay_positions_tenant ON relay_positions
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON relay_positions TO aeterna_app;

GRANT SELECT ON tenant_streams, relay_positions TO aeterna_system;
CREATE POLICY tenant_streams_system_read ON tenant_streams FOR SELECT TO aeterna_system USING (true);
CREATE POLICY relay_positions_system_read ON relay_positions FOR SELECT TO aeterna_system USING (true);
