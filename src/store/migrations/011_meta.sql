-- Meta-Agent runs (build → test → improve) and their iterations. The run row is the state a
-- resumed job continues from; every iteration is written before its test starts, so a crash
-- repeats at most the step it was in.
CREATE TABLE meta_runs (
  tenant_id        text NOT NULL,
  id               uuid NOT NULL,
  goal             text NOT NULL,
  -- {"kind":"command","argv":[...]} or {"kind":"callback"}
  test             jsonb NOT NULL,
  max_iterations   integer NOT NULL,
  time_budget_ms   integer NOT NULL,
  test_timeout_ms  integer NOT NULL,
  -- layers / projectId / teamId the run reads and files its lessons under
  options          jsonb NOT NULL DEFAULT '{}',
  -- who asked: the run reads memories with their scopes, never wider
  requester        jsonb NOT NULL,
  status           text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  stop_reason      text,
  cancel_requested boolean NOT NULL DEFAULT false,
  solution         text,
  escalation       jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  -- set when the run first starts, so a resumed run keeps the budget it began with
  deadline_at      timestamptz,
  finished_at      timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX meta_runs_recent_idx ON meta_runs (tenant_id, created_at DESC);

CREATE TABLE meta_iterations (
  tenant_id          text NOT NULL,
  run_id             uuid NOT NULL,
  n                  integer NOT NULL CHECK (n >= 1),
  source             text NOT NULL CHECK (source IN ('build', 'improve')),
  solution           text NOT NULL,
  rationale          text NOT NULL DEFAULT '',
  -- hindsight resolutions handed to the model: [{patternId, resolution, successRate, similarity}]
  hints              jsonb NOT NULL DEFAULT '[]',
  -- the hindsight pattern this iteration's failed test was reported as
  failure_pattern_id uuid,
  -- pending: not tested yet; awaiting: sent to the caller (callback); done: test holds the outcome
  test_state         text NOT NULL DEFAULT 'pending' CHECK (test_state IN ('pending', 'awaiting', 'done')),
  test               jsonb,
  started_at         timestamptz NOT NULL DEFAULT now(),
  tested_at          timestamptz,
  PRIMARY KEY (tenant_id, run_id, n)
);

ALTER TABLE meta_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE meta_runs FORCE ROW LEVEL SECURITY;
ALTER TABLE meta_iterations ENABLE ROW LEVEL SECURITY;
ALTER TABLE meta_iterations FORCE ROW LEVEL SECURITY;

CREATE POLICY meta_runs_tenant ON meta_runs
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY meta_iterations_tenant ON meta_iterations
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE ON meta_runs TO aeterna_app;
GRANT SELECT, INSERT, UPDATE ON meta_iterations TO aeterna_app;
