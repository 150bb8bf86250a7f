-- Dead-lettered jobs: a job that failed its last attempt, kept until an admin retries it (and
-- after, as its history). The queue (BullMQ or in-process) forgets failed jobs after
-- AETERNA_JOB_RETAIN_SEC; this row holds the event, so a retry can re-create the job from it.
CREATE TABLE dead_jobs (
  tenant_id   text NOT NULL,
  kind        text NOT NULL,
  job_id      text NOT NULL,
  event       jsonb NOT NULL,
  error       text NOT NULL,
  attempts    integer NOT NULL,
  failed_at   timestamptz NOT NULL DEFAULT now(),
  -- NULL while the job is dead; set when an admin retries it, cleared if it dies again.
  retried_at  timestamptz,
  retry_count integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, kind, job_id)
);
-- The admin list: a tenant's dead jobs, most recent failure first.
CREATE INDEX dead_jobs_failed_idx ON dead_jobs (tenant_id, failed_at DESC) WHERE retried_at IS NULL;

ALTER TABLE dead_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY dead_jobs_tenant ON dead_jobs
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON dead_jobs TO aeterna_app;
