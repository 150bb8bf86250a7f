import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Every script pushes its keys' own TTL to this, so they only ever expire when no node has
 * touched them for a day: the keys of a deployment (or a test run) that is gone for good.
 * Live sessions are touched by every heartbeat.
 */
const ABANDONED_MS = 24 * 60 * 60 * 1000;

/**
 * The Redis side of presence. Every change to a session runs as one script, so a session moves
 * from one state to the next atomically and exactly one caller sees each transition; that caller
 * is the one node that announces it. That is what keeps two nodes sweeping the same session from
 * both announcing a departure.
 *
 * KEYS (same for every script):
 *   1 conns    hash   connectionId → entry JSON (see members.ts ConnectionEntry)
 *   2 exp      zset   connectionId → expiry, ms of Redis' clock
 *   3 members  hash   memberId → its connection ids, space separated, so that finding one
 *                     member's connections costs O(its connections), not O(session)
 *   4 index    zset   "tenant:session" → the session's earliest expiry, for the sweeper
 * ARGV[1] the session's index member, ARGV[2] ttl ms, ARGV[3] '1' to purge expired entries
 * ('0' while the node distrusts expiries after Redis trouble), then per script.
 *
 * Expiries use Redis' clock (TIME), not the nodes', so clock skew between nodes cannot expire a
 * live connection early. Every script replies {transitions, extra}, where each transition is
 * {memberId, entries before, entries after} for a member the script touched.
 */
const PRELUDE = `
local ABANDONED_MS = ${ABANDONED_MS}
if redis.replicate_commands then redis.replicate_commands() end
local conns, exp, byMember, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ref, ttl, purging = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local before, order = {}, {}

local function idsOf(memberId)
  local ids = {}
  local list = redis.call('HGET', byMember, memberId)
  if list then for id in string.gmatch(list, '%S+') do ids[#ids + 1] = id end end
  return ids
end

local function setIds(memberId, ids)
  if #ids == 0 then redis.call('HDEL', byMember, memberId) else redis.call('HSET', byMember, memberId, table.concat(ids, ' ')) end
end

local function entriesOf(memberId)
  local ids = idsOf(memberId)
  local found = {}
  if #ids == 0 then return found end
  for _, entry in ipairs(redis.call('HMGET', conns, unpack(ids))) do
    if entry then found[#found + 1] = entry end
  end
  return found
end

-- Remembers a member's entries as they were before this script first changed them.
local function touch(memberId)
  if before[memberId] == nil then
    before[memberId] = entriesOf(memberId)
    order[#order + 1] = memberId
  end
end

local function put(id, memberId, entry)
  touch(memberId)
  redis.call('HSET', conns, id, entry)
  redis.call('ZADD', exp, now + ttl, id)
  local ids = idsOf(memberId)
  for _, known in ipairs(ids) do if known == id then return end end
  ids[#ids + 1] = id
  setIds(memberId, ids)
end

local function remove(id)
  redis.call('ZREM', exp, id)
  local entry = redis.call('HGET', conns, id)
  if not entry then return end
  local ok, decoded = pcall(cjson.decode, entry)
  local memberId = ok and type(decoded) == 'table' and decoded.memberId
  if type(memberId) == 'string' then touch(memberId) end
  redis.call('HDEL', conns, id)
  if type(memberId) ~= 'string' then return end
  local rest = {}
  for _, other in ipairs(idsOf(memberId)) do if other ~= id then rest[#rest + 1] = other end end
  setIds(memberId, rest)
end

local function purge()
  if not purging then return end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now)) do remove(id) end
end

local function finish(extra)
  local earliest = redis.call('ZRANGE', exp, 0, 0, 'WITHSCORES')
  if #earliest == 0 then redis.call('ZREM', index, ref) else redis.call('ZADD', index, earliest[2], ref) end
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ABANDONED_MS) end
  local transitions = {}
  for i, memberId in ipairs(order) do transitions[i] = {memberId, before[memberId], entriesOf(memberId)} end
  return {transitions, extra}
end
`;

/** Loads by hash and falls back to the source when Redis has lost its script cache (restart, SCRIPT FLUSH, failover). */
export class LuaScript {
  private readonly sha: string;

  constructor(
    readonly name: string,
    private readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/** ARGV[4] connection id, [5] member id, [6] entry JSON, [7] '1' to reply every entry of the session as extra. */
export const PUT_SCRIPT = new LuaScript(
  'presence.put',
  `${PRELUDE}
put(ARGV[4], ARGV[5], ARGV[6])
purge()
return finish(ARGV[7] == '1' and redis.call('HVALS', conns) or {})
`,
);

/**
 * ARGV[4] '1' to reply every remaining entry as extra, [5..] connection ids to remove. With no
 * ids it only purges what expired: that is the sweeper's and the reader's call.
 */
export const REMOVE_SCRIPT = new LuaScript(
  'presence.remove',
  `${PRELUDE}
for i = 5, #ARGV do remove(ARGV[i]) end
purge()
return finish(ARGV[4] == '1' and redis.call('HVALS', conns) or {})
`,
);

/**
 * ARGV[4..] the calling node's connection ids. Pushes their expiry forward; replies as extra
 * the ids that are gone (purged while this node could not reach Redis), which the node then
 * puts back. It never creates an entry itself, so a heartbeat racing a leave cannot revive it.
 */
export const HEARTBEAT_SCRIPT = new LuaScript(
  'presence.heartbeat',
  `${PRELUDE}
local missing = {}
for i = 4, #ARGV do
  if redis.call('HEXISTS', conns, ARGV[i]) == 1 then redis.call('ZADD', exp, now + ttl, ARGV[i]) else missing[#missing + 1] = ARGV[i] end
end
return finish(missing)
`,
);
