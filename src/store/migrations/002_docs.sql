-- Shared documents (Yjs): one head row per document plus its log of updates.
-- The same file runs on PostgreSQL and PGlite.

CREATE TABLE docs (
  tenant_id    text NOT NULL,
  doc_id       text NOT NULL,
  -- The newest seq appended. Every append bumps it with an upsert, which row-locks the head until
  -- commit: appends and compactions of one document are serialised and its seqs have no gaps.
  head_seq     bigint NOT NULL,
  -- Every update with seq <= snapshot_seq merged into one Yjs update; NULL until the first compaction.
  snapshot     bytea,
  snapshot_seq bigint NOT NULL DEFAULT 0,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, doc_id),
  CHECK (snapshot_seq >= 0 AND snapshot_seq <= head_seq)
);

-- "data", not "update": UPDATE is a reserved word and would need quoting in every query.
CREATE TABLE doc_updates (
  tenant_id  text NOT NULL,
  doc_id     text NOT NULL,
  seq        bigint NOT NULL,
  data       bytea NOT NULL,
  actor      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, doc_id, seq)
);

ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
ALTER TABLE doc_updates ENABLE ROW LEVEL SECURITY;
ALTER TABLE doc_updates FORCE ROW LEVEL SECURITY;

-- With no app.tenant_id set, current_setting(..., true) is NULL and every row is hidden.
CREATE POLICY docs_tenant ON docs
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY doc_updates_tenant ON doc_updates
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Updates are never edited in place; DELETE is only for compaction, which folds them into the
-- snapshot in the same transaction. Documents themselves are not deleted by the application.
GRANT SELECT, INSERT, UPDATE ON docs TO aeterna_app;
GRANT SELECT, INSERT, DELETE ON doc_updates TO aeterna_app;
