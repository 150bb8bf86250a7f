-- Each memory's three summary levels (sentence, paragraph, detailed) for the Context Architect,
-- written by the cca.summarize job. A row belongs to the content it was made from: a reader
-- compares content_hash with the memory's and ignores rows of older content, and the job
-- replaces them. The summariser is recorded so the same content is never summarised twice by the
-- same summariser, across memories too (hence the content_hash index).
CREATE TABLE memory_summaries (
  tenant_id    text NOT NULL,
  -- A hard delete of the memory (erasure) takes its summaries with it.
  memory_id    uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
  level        text NOT NULL CHECK (level IN ('sentence', 'paragraph', 'detailed')),
  content_hash text NOT NULL,
  summary      text NOT NULL,
  tokens       integer NOT NULL CHECK (tokens >= 0),
  -- 'extractive', or 'llm:<model>'
  summarizer   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, memory_id, level)
);
CREATE INDEX memory_summaries_hash_idx ON memory_summaries (tenant_id, content_hash, summarizer);

ALTER TABLE memory_summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_summaries FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_summaries_tenant ON memory_summaries
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_summaries TO aeterna_app;
