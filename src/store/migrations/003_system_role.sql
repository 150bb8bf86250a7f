-- The relay reads every tenant's stream head to find undelivered events. It does so as
-- aeterna_system, which may only SELECT the counter rows (tenant id, seq, epoch): never memories or
-- events, which it reads tenant by tenant under the tenant's own RLS context.
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

GRANT SELECT ON tenant_streams TO aeterna_system;
CREATE POLICY tenant_streams_system_read ON tenant_streams FOR SELECT TO aeterna_system USING (true);
