-- Token budgets (issue 5). Limits come from config (AETERNA_BUDGET_*); an admin may override
-- them per tenant, kind and period here. A missing row means "use the configured default".
CREATE TABLE token_budgets (
  tenant_id   text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('embed', 'llm')),
  period      text NOT NULL CHECK (period IN ('day', 'month')),
  -- 0 = unlimited.
  token_limit bigint NOT NULL CHECK (token_limit >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  jsonb,
  PRIMARY KEY (tenant_id, kind, period)
);

-- Usage per UTC period: one row per (tenant, kind, period, period start). A new period is a new
-- row, so resets need no job and the flags below are "once per period" by construction. Every
-- charge is one `INSERT … ON CONFLICT DO UPDATE SET tokens = tokens + n RETURNING`, whose row
-- lock serialises a tenant's concurrent charges until commit: a limit cannot be raced past.
CREATE TABLE token_usage (
  tenant_id    text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('embed', 'llm')),
  period       text NOT NULL CHECK (period IN ('day', 'month')),
  period_start date NOT NULL,
  tokens       bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
  -- budget.warning / budget.exceeded were announced for this row.
  warned       boolean NOT NULL DEFAULT false,
  exceeded     boolean NOT NULL DEFAULT false,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, kind, period, period_start)
);

ALTER TABLE token_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE token_budgets FORCE ROW LEVEL SECURITY;
ALTER TABLE token_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE token_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY token_budgets_tenant ON token_budgets
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY token_usage_tenant ON token_usage
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
-- DELETE on token_budgets clears an override; usage rows are never deleted by the app.
GRANT SELECT, INSERT, UPDATE, DELETE ON token_budgets TO aeterna_app;
GRANT SELECT, INSERT, UPDATE ON token_usage TO aeterna_app;
