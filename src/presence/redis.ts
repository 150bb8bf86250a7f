import { Redis, type RedisOptions } from 'ioredis';
import { AeternaError, type PresenceMember } from '../protocol/index.js';
import { assertId, isValidId } from '../tenancy/index.js';
import {
  assertSameMember,
  buildEntry,
  changeOf,
  checkConnection,
  checkRef,
  checkState,
  connectionEntrySchema,
  connectionOf,
  defaultPresenceLog,
  membersOf,
  notify,
  putOutcome,
  type ConnectionEntry,
  type PresenceLog,
} from './members.js';
import { HEARTBEAT_SCRIPT, PUT_SCRIPT, REMOVE_SCRIPT, type LuaScript } from './redis-scripts.js';
import type {
  PresenceChange,
  PresenceConnection,
  PresenceConnectionRef,
  PresenceJoinResult,
  PresenceListener,
  PresenceRegistry,
  PresenceState,
  PresenceUpdateResult,
} from './types.js';

export interface RedisPresenceOptions {
  url: string;
  /** Names this process in its entries; unique per running process. */
  nodeId: string;
  /** A connection not refreshed for this long is gone (its node died). Default 10 s. */
  ttlMs?: number;
  /** How often this node refreshes its connections; must be below ttlMs. Default 3 s. */
  heartbeatMs?: number;
  /** How often this node looks for expired connections. Default 1 s. */
  sweepMs?: number;
  /**
   * Prefix of the one key shared by all tenants, the sweeper's index of sessions. Every node of
   * a deployment must use the same one; tests use their own so that sweepers of other test runs
   * on the same Redis never announce their departures. Default `aeterna`.
   */
  namespace?: string;
  log?: PresenceLog;
  /** Extra ioredis options (TLS, password, …), applied over the defaults below. */
  redis?: RedisOptions;
}

const DEFAULT_TTL_MS = 10_000;
const DEFAULT_HEARTBEAT_MS = 3_000;
const DEFAULT_SWEEP_MS = 1_000;
/** Sessions swept per round, and rounds per tick: bounded work per tick, however many sessions are due. */
const SWEEP_BATCH = 200;
const SWEEP_ROUNDS = 10;

/** A member's records before and after one script. */
interface Transition {
  memberId: string;
  before: ConnectionEntry[];
  after: ConnectionEntry[];
}

interface ScriptReply {
  transitions: Transition[];
  extra: string[];
}

/** The connections this node holds in one session: what its heartbeat refreshes and removeOwn removes. */
interface OwnSession {
  tenantId: string;
  sessionId: string;
  conns: Map<string, ConnectionEntry>;
}

/** Tenant and session ids cannot contain ':', so the pair is unambiguous and can be split back. */
function sessionRef(tenantId: string, sessionId: string): string {
  return `${tenantId}:${sessionId}`;
}

function parseSessionRef(ref: string): { tenantId: string; sessionId: string } | undefined {
  const [tenantId, sessionId, ...rest] = ref.split(':');
  return rest.length === 0 && isValidId(tenantId) && isValidId(sessionId) ? { tenantId, sessionId } : undefined;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

/**
 * What a node knows about its Redis. A failure is logged once per outage, not once per tick.
 * And after any trouble, expiries are not evidence of death for a while: every node's
 * heartbeats were likely failing too, so sweeping waits one ttl for them to catch up rather
 * than announce live members as left. A node that alone lost Redis is swept by the others.
 */
class RedisHealth {
  private readonly failing = new Set<string>();
  private distrustUntil = 0;

  constructor(
    private readonly log: PresenceLog,
    private readonly ttlMs: number,
  ) {}

  failed(what: string, err: unknown): void {
    this.distrust();
    if (this.failing.has(what)) return;
    this.failing.add(what);
    this.log(`presence ${what} failed; retrying quietly until it succeeds`, err);
  }

  succeeded(what: string): void {
    if (this.failing.delete(what)) this.log(`presence ${what} recovered`);
  }

  distrust(): void {
    this.distrustUntil = Date.now() + this.ttlMs;
  }

  get expiriesTrusted(): boolean {
    return Date.now() >= this.distrustUntil;
  }
}

/** A task re-run `ms` after the previous run ended, so a slow Redis never stacks runs. */
class Loop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly what: string,
    private readonly ms: number,
    private readonly task: () => Promise<void>,
    private readonly health: RedisHealth,
  ) {}

  start(): void {
    if (this.stopped || this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.task()
        .then(
          () => this.health.succeeded(this.what),
          (err: unknown) => this.health.failed(this.what, err),
        )
        .finally(() => {
          this.running = undefined;
          this.start();
        });
    }, this.ms);
    // Timers alone must not keep a process alive that has nothing else to do.
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}

/**
 * Cluster mode: presence shared by every node through Redis (ARCHITECTURE.md, "Delivery and
 * presence contract"). Per session, keys starting with the tenant:
 *   t:{tenant}:presence:{session}:conns    hash connectionId → entry
 *   t:{tenant}:presence:{session}:exp      zset connectionId → expiry
 *   t:{tenant}:presence:{session}:members  hash memberId → connection ids
 * and one index for all tenants, `{namespace}:presence:sessions` (zset "tenant:session" →
 * earliest expiry). That index is the one key not prefixed by a tenant, because its job is to
 * let a sweeper find the sessions of a dead node in any tenant without SCANning the keyspace;
 * per-tenant indexes would only need an index of tenants in turn. It holds ids, no presence data.
 *
 * Each node heartbeats the connections it holds; a sweeper on every node purges expired ones
 * and announces, through `onChange`, members whose last connection expired. Reads purge too.
 * The scripts need one Redis (standalone or a Sentinel primary), not Redis Cluster: a script's
 * keys would span hash slots.
 *
 * Operations on one connection run one after another: a leave cannot overtake the join before
 * it, even when a script has to be resent after NOSCRIPT.
 */
export class RedisPresenceRegistry implements PresenceRegistry {
  readonly nodeId: string;
  private readonly client: Redis;
  private readonly ttlMs: number;
  private readonly indexKey: string;
  private readonly log: PresenceLog;
  private readonly health: RedisHealth;
  private readonly listeners = new Set<PresenceListener>();
  /** Session ref → this node's connections in it. */
  private readonly own = new Map<string, OwnSession>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly loops: Loop[];
  private started = false;
  private closing: Promise<void> | undefined;
  private connectionLost = false;

  constructor(opts: RedisPresenceOptions) {
    this.nodeId = assertId('nodeId', opts.nodeId);
    this.ttlMs = opts.ttlMs ?? DEFAULT_TTL_MS;
    const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const sweepMs = opts.sweepMs ?? DEFAULT_SWEEP_MS;
    for (const [name, value] of Object.entries({ ttlMs: this.ttlMs, heartbeatMs, sweepMs })) {
      if (!Number.isInteger(value) || value <= 0) throw new AeternaError('INVALID_ARGUMENT', `presence ${name} must be a positive integer`);
    }
    if (heartbeatMs >= this.ttlMs) throw new AeternaError('INVALID_ARGUMENT', 'presence heartbeatMs must be below ttlMs');
    this.indexKey = `${assertId('namespace', opts.namespace ?? 'aeterna')}:presence:sessions`;
    this.log = opts.log ?? defaultPresenceLog;
    this.health = new RedisHealth(this.log, this.ttlMs);
    this.loops = [
      new Loop('heartbeat', heartbeatMs, () => this.heartbeat(), this.health),
      new Loop('sweep', sweepMs, () => this.sweep(), this.health),
    ];
    this.client = new Redis(opts.url, {
      lazyConnect: true,
      // Fail a call within a few seconds while Redis is away instead of queueing it for ever:
      // the caller gets UNAVAILABLE, the heartbeat simply tries again.
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      commandTimeout: 2_000,
      retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
      ...opts.redis,
    });
    this.client.on('error', (err: unknown) => this.health.failed('Redis connection', err));
    this.client.on('close', () => (this.connectionLost = true));
    this.client.on('ready', () => this.onReady());
  }

  async start(): Promise<void> {
    this.assertOpen();
    if (this.started) return;
    this.started = true;
    for (const loop of this.loops) loop.start();
    // A failed first connect is reported by the 'error' listener and retried by ioredis.
    if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
  }

  async join(conn: PresenceConnection, state: PresenceState): Promise<PresenceJoinResult> {
    const c = checkConnection(conn);
    const s = checkState(state);
    this.assertOpen();
    return this.serial(c, async () => {
      const previous = this.ownEntry(c);
      assertSameMember(previous, c);
      const { transition, reply } = await this.putOwn(c, buildEntry(c, s, this.nodeId, previous, new Date()), previous, true);
      return { ...putOutcome(c, transition.before, transition.after), members: membersOf(this.entries(reply.extra)) };
    });
  }

  async update(ref: PresenceConnectionRef, state: PresenceState): Promise<PresenceUpdateResult | undefined> {
    const r = checkRef(ref);
    const s = checkState(state);
    this.assertOpen();
    return this.serial(r, async () => {
      const previous = this.ownEntry(r);
      if (!previous) return undefined;
      const entry = buildEntry(connectionOf(r, previous), s, this.nodeId, previous, new Date());
      const { transition } = await this.putOwn(r, entry, previous, false);
      return putOutcome(r, transition.before, transition.after);
    });
  }

  async leave(ref: PresenceConnectionRef): Promise<PresenceChange | undefined> {
    const r = checkRef(ref);
    this.assertOpen();
    return this.serial(r, async () => {
      const entry = this.ownEntry(r);
      if (!entry) return undefined;
      // Forgotten before Redis answers: if it never does, the entry is no longer heartbeated
      // and expires, and a sweeper announces the departure instead.
      this.forget(r, entry);
      const reply = await this.exec(REMOVE_SCRIPT, r.tenantId, r.sessionId, ['0', r.connectionId]);
      const transition = this.settle(r.tenantId, r.sessionId, reply, entry.memberId);
      return transition && changeOf(r.tenantId, r.sessionId, transition.before, transition.after, new Date());
    });
  }

  async members(tenantId: string, sessionId: string): Promise<PresenceMember[]> {
    const t = assertId('tenantId', tenantId);
    const s = assertId('sessionId', sessionId);
    this.assertOpen();
    const reply = await this.exec(REMOVE_SCRIPT, t, s, ['1']);
    this.settle(t, s, reply);
    return membersOf(this.entries(reply.extra));
  }

  onChange(listener: PresenceListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async removeOwn(): Promise<PresenceChange[]> {
    this.assertOpen();
    const sessions = [...this.own.values()];
    this.own.clear();
    const results = await Promise.allSettled(
      sessions.map(async ({ tenantId, sessionId, conns }) => {
        const reply = await this.exec(REMOVE_SCRIPT, tenantId, sessionId, ['0', ...conns.keys()]);
        return reply.transitions.map((t) => changeOf(tenantId, sessionId, t.before, t.after, new Date()));
      }),
    );
    const changes: PresenceChange[] = [];
    for (const result of results) {
      if (result.status === 'rejected') this.log('presence removeOwn: a session could not be cleared; its entries will expire', result.reason);
      else for (const change of result.value) if (change) changes.push(change);
    }
    return changes;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all(this.loops.map((loop) => loop.stop()));
      this.listeners.clear();
      if (this.client.status === 'ready') {
        try {
          await this.client.quit();
          return;
        } catch {
          // fall through: quit fails when the connection is already going
        }
      }
      this.client.disconnect();
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new AeternaError('UNAVAILABLE', 'presence registry is closed');
  }

  private ownEntry(ref: PresenceConnectionRef): ConnectionEntry | undefined {
    return this.own.get(sessionRef(ref.tenantId, ref.sessionId))?.conns.get(ref.connectionId);
  }

  /** Drops the connection from what this node heartbeats, unless a later call has replaced its entry. */
  private forget(ref: PresenceConnectionRef, entry: ConnectionEntry): void {
    const key = sessionRef(ref.tenantId, ref.sessionId);
    const mine = this.own.get(key);
    if (mine?.conns.get(ref.connectionId) !== entry) return;
    mine.conns.delete(ref.connectionId);
    if (mine.conns.size === 0) this.own.delete(key);
  }

  /** Runs operations on one connection in call order; different connections run concurrently. */
  private serial<T>(ref: PresenceConnectionRef, op: () => Promise<T>): Promise<T> {
    const key = `${sessionRef(ref.tenantId, ref.sessionId)} ${ref.connectionId}`;
    const result = (this.queues.get(key) ?? Promise.resolve()).then(op);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }

  /**
   * Writes one of this node's entries and remembers it for the heartbeat. On failure the local
   * copy goes back to what it was, unless a later call has replaced it meanwhile.
   */
  private async putOwn(
    ref: PresenceConnectionRef,
    entry: ConnectionEntry,
    previous: ConnectionEntry | undefined,
    withMembers: boolean,
  ): Promise<{ transition: Transition; reply: ScriptReply }> {
    const key = sessionRef(ref.tenantId, ref.sessionId);
    const mine = this.own.get(key) ?? { tenantId: ref.tenantId, sessionId: ref.sessionId, conns: new Map<string, ConnectionEntry>() };
    this.own.set(key, mine);
    mine.conns.set(entry.connectionId, entry);
    let reply: ScriptReply;
    try {
      reply = await this.exec(PUT_SCRIPT, ref.tenantId, ref.sessionId, [entry.connectionId, entry.memberId, JSON.stringify(entry), withMembers ? '1' : '0']);
    } catch (err) {
      if (previous) {
        if (this.ownEntry(ref) === entry) mine.conns.set(entry.connectionId, previous);
      } else {
        this.forget(ref, entry);
      }
      throw err;
    }
    const transition = this.settle(ref.tenantId, ref.sessionId, reply, entry.memberId);
    if (!transition) throw new AeternaError('INTERNAL', 'presence put did not touch its own member');
    return { transition, reply };
  }

  /**
   * Announces the transitions of a script through the listeners, except the caller's own
   * member's, which is returned for the caller to report.
   */
  private settle(tenantId: string, sessionId: string, reply: ScriptReply, callerMemberId?: string): Transition | undefined {
    const now = new Date();
    const discovered: PresenceChange[] = [];
    let caller: Transition | undefined;
    for (const transition of reply.transitions) {
      if (transition.memberId === callerMemberId) {
        caller = transition;
        continue;
      }
      const change = changeOf(tenantId, sessionId, transition.before, transition.after, now);
      if (change) discovered.push(change);
    }
    notify(this.listeners, discovered, this.log);
    return caller;
  }

  private async exec(script: LuaScript, tenantId: string, sessionId: string, args: readonly string[]): Promise<ScriptReply> {
    const base = `t:${tenantId}:presence:${sessionId}`;
    let raw: unknown;
    try {
      raw = await script.run(this.client, [`${base}:conns`, `${base}:exp`, `${base}:members`, this.indexKey], [sessionRef(tenantId, sessionId), this.ttlMs, this.health.expiriesTrusted ? '1' : '0', ...args]);
    } catch (err) {
      this.health.failed('Redis command', err);
      throw new AeternaError('UNAVAILABLE', 'presence is unavailable: Redis did not answer; retry shortly');
    }
    this.health.succeeded('Redis command');
    return this.parseReply(script, raw);
  }

  private parseReply(script: LuaScript, raw: unknown): ScriptReply {
    const bad = () => new AeternaError('INTERNAL', `unexpected reply from ${script.name}`);
    if (!Array.isArray(raw) || raw.length !== 2) throw bad();
    const [transitions, extra] = raw as unknown[];
    if (!Array.isArray(transitions) || !isStringArray(extra)) throw bad();
    return {
      transitions: transitions.map((t: unknown) => {
        if (!Array.isArray(t) || t.length !== 3) throw bad();
        const [memberId, before, after] = t as unknown[];
        if (typeof memberId !== 'string' || !isStringArray(before) || !isStringArray(after)) throw bad();
        return { memberId, before: this.entries(before), after: this.entries(after) };
      }),
      extra,
    };
  }

  /** A record another process wrote badly is skipped (and logged), not allowed to fail the session. */
  private entries(raw: readonly string[]): ConnectionEntry[] {
    const out: ConnectionEntry[] = [];
    for (const text of raw) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const result = connectionEntrySchema.safeParse(parsed);
      if (result.success) out.push(result.data);
      else this.log('presence: skipped a malformed entry in Redis', text.slice(0, 200));
    }
    return out;
  }

  private async heartbeat(): Promise<void> {
    const results = await Promise.allSettled(
      [...this.own.values()].map(async ({ tenantId, sessionId, conns }) => {
        const reply = await this.exec(HEARTBEAT_SCRIPT, tenantId, sessionId, [...conns.keys()]);
        await Promise.all(reply.extra.map((connectionId) => this.restore({ tenantId, sessionId, connectionId })));
      }),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Puts back a connection of ours that another node purged while we could not reach Redis
   * (they announced it left, so it is announced again as it comes back), unless it left since.
   */
  private restore(ref: PresenceConnectionRef): Promise<void> {
    return this.serial(ref, async () => {
      const entry = this.ownEntry(ref);
      if (!entry) return;
      const reply = await this.exec(PUT_SCRIPT, ref.tenantId, ref.sessionId, [entry.connectionId, entry.memberId, JSON.stringify(entry), '0']);
      this.settle(ref.tenantId, ref.sessionId, reply);
    });
  }

  private async sweep(): Promise<void> {
    if (!this.health.expiriesTrusted) return;
    for (let round = 0; round < SWEEP_ROUNDS; round++) {
      const [seconds, micros] = await this.client.time();
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const due = await this.client.zrangebyscore(this.indexKey, '-inf', now, 'LIMIT', 0, SWEEP_BATCH);
      const results = await Promise.allSettled(due.map((ref) => this.sweepSession(ref)));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (due.length < SWEEP_BATCH) return;
    }
  }

  private async sweepSession(ref: string): Promise<void> {
    const session = parseSessionRef(ref);
    if (!session) {
      await this.client.zrem(this.indexKey, ref);
      return;
    }
    const reply = await this.exec(REMOVE_SCRIPT, session.tenantId, session.sessionId, ['0']);
    this.settle(session.tenantId, session.sessionId, reply);
  }

  /** Heartbeats resume at once after a reconnect; sweeping only after they had a ttl to land. */
  private onReady(): void {
    this.health.succeeded('Redis connection');
    if (!this.connectionLost) return;
    this.connectionLost = false;
    this.health.distrust();
    if (!this.started || this.closing) return;
    this.heartbeat().catch((err: unknown) => this.health.failed('heartbeat', err));
  }
}
