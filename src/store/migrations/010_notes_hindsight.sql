-- Note-taking (trajectory capture, session end, distilled notes) and hindsight learning (error
-- patterns, their occurrences and resolution outcomes). Every table is tenant-scoped under RLS.

-- One row per session that captured anything. A session captured again after it ended starts a
-- new segment; each segment ends once and is distilled once.
CREATE TABLE trajectory_sessions (
  tenant_id     text NOT NULL,
  session_id    text NOT NULL,
  segment       integer NOT NULL DEFAULT 1,
  project_id    text,
  started_at    timestamptz NOT NULL DEFAULT now(),
  last_event_at timestamptz NOT NULL DEFAULT now(),
  -- events of the current segment
  event_count   integer NOT NULL DEFAULT 0,
  ended_at      timestamptz,
  end_reason    text CHECK (end_reason IN ('ended', 'idle')),
  ended_by      jsonb,
  PRIMARY KEY (tenant_id, session_id)
);
-- The idle sweep: open sessions, least recently active first.
CREATE INDEX trajectory_sessions_open_idx ON trajectory_sessions (tenant_id, last_event_at) WHERE ended_at IS NULL;

-- Captured tool calls, redacted and capped before they were written.
CREATE TABLE trajectory_events (
  tenant_id        text NOT NULL,
  id               uuid NOT NULL,
  session_id       text NOT NULL,
  segment          integer NOT NULL,
  -- 1-based position in the segment: ids of one batch share a millisecond and do not order it
  ordinal          integer NOT NULL,
  project_id       text,
  tool_name        text NOT NULL,
  input            text,
  output           text,
  input_truncated  boolean NOT NULL DEFAULT false,
  output_truncated boolean NOT NULL DEFAULT false,
  redactions       integer NOT NULL DEFAULT 0,
  success          boolean NOT NULL,
  duration_ms      integer,
  -- the caller's own flag; NULL leaves it to the tool-name heuristic
  state_changing   boolean,
  feedback         jsonb,
  actor            jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX trajectory_events_session_idx ON trajectory_events (tenant_id, session_id, segment, ordinal);

-- What distillation decided per segment. `draft` is written before the note is added, so a job
-- that re-runs after a crash adds the very same text (an exact-hash dedup), even from an LLM.
CREATE TABLE trajectory_notes (
  tenant_id     text NOT NULL,
  session_id    text NOT NULL,
  segment       integer NOT NULL,
  status        text NOT NULL CHECK (status IN ('skipped', 'drafted', 'written')),
  reason        text,
  draft         jsonb,
  memory_id     uuid,
  deduplicated  boolean,
  created_at    timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz,
  PRIMARY KEY (tenant_id, session_id, segment)
);

-- One row per distinct error signature.
CREATE TABLE hindsight_patterns (
  tenant_id          text NOT NULL,
  id                 uuid NOT NULL,
  signature_hash     text NOT NULL,
  body_hash          text NOT NULL,
  signature          text NOT NULL,
  error_type         text NOT NULL,
  message            text NOT NULL,
  frames             text[] NOT NULL DEFAULT '{}',
  embedding          real[] NOT NULL,
  embedding_model    text NOT NULL,
  occurrences        integer NOT NULL DEFAULT 1,
  -- the last team a report or resolution named: where promotion goes
  team_id            text,
  first_seen_at      timestamptz NOT NULL DEFAULT now(),
  last_seen_at       timestamptz NOT NULL DEFAULT now(),
  last_resolved_at   timestamptz,
  -- written before the team memory is added, so concurrent promoters add the same text
  promotion_draft    jsonb,
  promoted_memory_id uuid,
  promoted_team_id   text,
  promoted_at        timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, signature_hash)
);
CREATE INDEX hindsight_patterns_seen_idx ON hindsight_patterns (tenant_id, last_seen_at DESC);
CREATE INDEX hindsight_patterns_body_idx ON hindsight_patterns (tenant_id, body_hash);

CREATE TABLE hindsight_occurrences (
  tenant_id  text NOT NULL,
  id         uuid NOT NULL,
  pattern_id uuid NOT NULL,
  error_type text NOT NULL,
  message    text NOT NULL,
  stack      text,
  -- the caller's JSON after redaction, as text (a redacted value need not stay valid JSON)
  context    text,
  team_id    text,
  actor      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, pattern_id) REFERENCES hindsight_patterns (tenant_id, id)
);
CREATE INDEX hindsight_occurrences_pattern_idx ON hindsight_occurrences (tenant_id, pattern_id, id);

-- Each reported outcome of trying a resolution on a pattern.
CREATE TABLE hindsight_outcomes (
  tenant_id       text NOT NULL,
  id              uuid NOT NULL,
  pattern_id      uuid NOT NULL,
  resolution      text NOT NULL,
  resolution_hash text NOT NULL,
  success         boolean NOT NULL,
  team_id         text,
  actor           jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, pattern_id) REFERENCES hindsight_patterns (tenant_id, id)
);
CREATE INDEX hindsight_outcomes_pattern_idx ON hindsight_outcomes (tenant_id, pattern_id);

ALTER TABLE trajectory_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE trajectory_sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE trajectory_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE trajectory_events FORCE ROW LEVEL SECURITY;
ALTER TABLE trajectory_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE trajectory_notes FORCE ROW LEVEL SECURITY;
ALTER TABLE hindsight_patterns ENABLE ROW LEVEL SECURITY;
ALTER TABLE hindsight_patterns FORCE ROW LEVEL SECURITY;
ALTER TABLE hindsight_occurrences ENABLE ROW LEVEL SECURITY;
ALTER TABLE hindsight_occurrences FORCE ROW LEVEL SECURITY;
ALTER TABLE hindsight_outcomes ENABLE ROW LEVEL SECURITY;
ALTER TABLE hindsight_outcomes FORCE ROW LEVEL SECURITY;

CREATE POLICY trajectory_sessions_tenant ON trajectory_sessions
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY trajectory_events_tenant ON trajectory_events
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY trajectory_notes_tenant ON trajectory_notes
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY hindsight_patterns_tenant ON hindsight_patterns
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY hindsight_occurrences_tenant ON hindsight_occurrences
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY hindsight_outcomes_tenant ON hindsight_outcomes
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- Captured events and outcomes are history: the application inserts and reads them, never edits.
GRANT SELECT, INSERT, UPDATE ON trajectory_sessions TO aeterna_app;
GRANT SELECT, INSERT ON trajectory_events TO aeterna_app;
GRANT SELECT, INSERT, UPDATE ON trajectory_notes TO aeterna_app;
GRANT SELECT, INSERT, UPDATE ON hindsight_patterns TO aeterna_app;
GRANT SELECT, INSERT ON hindsight_occurrences TO aeterna_app;
GRANT SELECT, INSERT ON hindsight_outcomes TO aeterna_app;
