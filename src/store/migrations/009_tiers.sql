-- Tiered storage (src/memory/tiering.ts). Hot and warm memories are whole rows; a cold memory is a
-- stub: its content is a short preview, its metadata '{}', and the whole row lives in a Parquet
-- archive named by cold_key. Everything else (scope, tags, importance, embedding, hashes, version,
-- counters, timestamps) stays on the stub, so search, list and RLS work on it unchanged.
ALTER TABLE memories ADD COLUMN tier text NOT NULL DEFAULT 'hot' CHECK (tier IN ('hot', 'warm', 'cold'));
ALTER TABLE memories ADD COLUMN cold_key text;
-- When the memory last changed tier (NULL: never).
ALTER TABLE memories ADD COLUMN tiered_at timestamptz;
-- A stub without an archive, or an archive key on a whole row, would be a memory in no place.
ALTER TABLE memories ADD CONSTRAINT memories_cold_key CHECK ((tier = 'cold') = (cold_key IS NOT NULL));

-- Which stubs an archive file still serves: garbage collection of orphaned files, and stats.
CREATE INDEX memories_cold_key_idx ON memories (tenant_id, cold_key) WHERE cold_key IS NOT NULL;
