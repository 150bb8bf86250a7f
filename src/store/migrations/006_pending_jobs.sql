-- The in-process job queue's jobs (embedded mode) from enqueue until they finish. The relay moves
-- its position past an event once the event's jobs are enqueued, so a queue that kept them only
-- in memory would lose them to a crash; a restarted process resumes every row here instead.
-- BullMQ keeps its own jobs in Redis and never uses this table.
CREATE TABLE pending_jobs (
  tenant_id   text NOT NULL,
  kind        text NOT NULL,
  job_id      text NOT NULL,
  event       jsonb NOT NULL,
  -- Tries made so far, all failed (a job that succeeds or dies is deleted).
  attempts    integer NOT NULL DEFAULT 0,
  -- A job waiting out its retry backoff does not run before this, after a restart either.
  not_before  timestamptz NOT NULL DEFAULT now(),
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, kind, job_id)
);

ALTER TABLE pending_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pending_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY pending_jobs_tenant ON pending_jobs
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON pending_jobs TO aeterna_app;
