/**
 * The benchmark's server process (run with tsx by loadtest/memory-rest.ts; not a test).
 *
 * Opens a core from AETERNA_* (embedded PGlite, or PostgreSQL when AETERNA_DATABASE_URL is set),
 * seeds one tenant through the real MemoryService, then serves that one core twice: the uWS
 * gateway and the node:http baseline, each on its own port. It runs in a process of its own so
 * the load generator's CPU time is not billed to the server under test.
 *
 * stdout carries exactly one line, the ReadyLine JSON; logs and progress go to stderr.
 */
import http from 'node:http';
import { destination, pino } from 'pino';
import { createGateway } from '../gateway/app.js';
import { loadConfig } from '../src/config.js';
import { openCore, type Core } from '../src/core.js';
import { issueToken, type TenantContext } from '../src/tenancy/index.js';
import { memoryText, pick, prng, shuffled } from './corpus.js';
import { createNodeBaseline } from './node-baseline.js';
import { intSetting } from './settings.js';

const BENCH_TENANT = 'bench';

export interface SeedingStats {
  memories: number;
  /** Adds that the dedup path merged into an existing memory; each was retried with new text. */
  merged: number;
  seconds: number;
  perSecond: number;
  concurrency: number;
  projects: number;
  otherTenants: number;
  otherTenantMemories: number;
}

export interface ReadyLine {
  ready: true;
  uwsPort: number;
  nodePort: number;
  /** `GET /inflight` here answers `{"inflight": n}`: memory calls still running, on either transport. */
  controlPort: number;
  token: string;
  /** A random sample of the bench tenant's memory ids, for GET /v1/memories/:id. */
  ids: string[];
  backend: { db: string; vectors: string; embedder: string };
  seeding: SeedingStats;
}

const PROJECTS = ['apollo', 'borealis', 'cygnus', 'draco', 'eridanus', 'fornax', 'gemini', 'hydra'];
const KINDS = ['note', 'decision', 'incident', 'preference', 'runbook'];
const PROGRESS_EVERY = 500;

interface SeedOptions {
  count: number;
  concurrency: number;
  seed: number;
  progress?: (created: number, perSecond: number) => void;
}

/**
 * Adds `count` distinct memories with a few adds in flight, as concurrent agents would. A merge
 * by the dedup path does not count: the slot is retried with the next text of the stream.
 */
async function seedTenant(core: Core, ctx: TenantContext, opts: SeedOptions): Promise<{ ids: string[]; merged: number; seconds: number }> {
  const random = prng(opts.seed);
  const ids: string[] = [];
  let claimed = 0;
  let merged = 0;
  let draws = 0;
  const started = performance.now();
  const perSecond = () => ids.length / ((performance.now() - started) / 1000);

  const worker = async () => {
    while (claimed < opts.count) {
      claimed += 1;
      const n = draws++;
      const result = await core.memory.add(ctx, {
        layer: 'project',
        projectId: PROJECTS[n % PROJECTS.length],
        content: memoryText(random),
        tags: [pick(KINDS, random)],
        importance: Math.round(random() * 100) / 100,
        metadata: { source: 'loadtest', seq: n },
      });
      if (result.deduplicated) {
        merged += 1;
        claimed -= 1;
        continue;
      }
      ids.push(result.memory.id);
      if (ids.length % PROGRESS_EVERY === 0) opts.progress?.(ids.length, perSecond());
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return { ids, merged, seconds: (performance.now() - started) / 1000 };
}

const writer = (tenantId: string): TenantContext => ({ tenantId, userId: 'seeder', roles: ['developer'] });

/**
 * The core with every MemoryService call counted while it runs. A client that gives up (as
 * autocannon does when a round's time is up) does not stop the server's work on its request, so
 * the driver waits for this count to reach zero before the next round starts.
 */
function counted(core: Core): { core: Core; inflight: () => number } {
  let inflight = 0;
  const memory = new Proxy(core.memory, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        inflight += 1;
        return result.finally(() => {
          inflight -= 1;
        });
      };
    },
  });
  return { core: { ...core, memory }, inflight: () => inflight };
}

function controlServer(inflight: () => number): http.Server {
  return http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ inflight: inflight() }));
  });
}

async function main(): Promise<void> {
  const env = process.env;
  const memories = intSetting('BENCH_MEMORIES', env['BENCH_MEMORIES'], 10_000);
  const concurrency = intSetting('BENCH_SEED_CONCURRENCY', env['BENCH_SEED_CONCURRENCY'], 8, 1, 256);
  const otherTenants = intSetting('BENCH_OTHER_TENANTS', env['BENCH_OTHER_TENANTS'], 9, 0, 1000);
  const otherTenantMemories = intSetting('BENCH_OTHER_TENANT_MEMORIES', env['BENCH_OTHER_TENANT_MEMORIES'], 50, 0);
  const idSample = intSetting('BENCH_ID_SAMPLE', env['BENCH_ID_SAMPLE'], 1000);
  const maxSeconds = intSetting('BENCH_SERVER_MAX_SECONDS', env['BENCH_SERVER_MAX_SECONDS'], 1800);

  // Outlives a driver that died without killing us: never an orphan holding a port and a database.
  setTimeout(() => {
    process.stderr.write(`rest-server: ${maxSeconds}s lifetime exceeded, exiting\n`);
    process.exit(3);
  }, maxSeconds * 1000).unref();

  const config = loadConfig(env);
  // stderr, not the default stdout: stdout is the ready-line channel to the driver.
  const log = pino({ name: 'aeterna-bench', level: config.logLevel }, destination(2));
  const core = await openCore(config, log);
  if (!core.signingSecret) throw new Error('the benchmark signs its own token: set AETERNA_JWT_SECRET, not AETERNA_JWKS_URL');

  process.stderr.write(`seeding ${memories} memories into tenant "${BENCH_TENANT}" (${concurrency} in flight, ${core.db.kind}, ${core.vectors.name})\n`);
  const seeded = await seedTenant(core, writer(BENCH_TENANT), {
    count: memories,
    concurrency,
    seed: 1,
    progress: (created, rate) => process.stderr.write(`seeding ${created}/${memories} (${rate.toFixed(0)}/s)\n`),
  });
  const perSecond = seeded.ids.length / seeded.seconds;
  process.stderr.write(`seeded ${seeded.ids.length} in ${seeded.seconds.toFixed(1)}s (${perSecond.toFixed(0)}/s, ${seeded.merged} merged and retried)\n`);
  for (let t = 1; t <= otherTenants; t++) {
    await seedTenant(core, writer(`bench-other-${t}`), { count: otherTenantMemories, concurrency, seed: 1000 + t });
  }
  if (otherTenants > 0) process.stderr.write(`seeded ${otherTenants} other tenants x ${otherTenantMemories} memories\n`);

  // Both transports get the same wrapped core, so the counting costs them alike.
  const served = counted(core);
  const uws = createGateway(served.core, log);
  const node = createNodeBaseline(served.core, log);
  const uwsPort = await uws.listen('127.0.0.1', 0);
  const nodePort = await node.listen('127.0.0.1', 0);
  const control = controlServer(served.inflight);
  const controlPort = await new Promise<number>((resolve) => {
    control.listen(0, '127.0.0.1', () => {
      const address = control.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), 5000).unref();
    control.close();
    await Promise.allSettled([uws.close(1000), node.close(1000)]);
    await core.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  const ready: ReadyLine = {
    ready: true,
    uwsPort,
    nodePort,
    controlPort,
    token: await issueToken(core.signingSecret, { tenantId: BENCH_TENANT, userId: 'reader', roles: ['developer'], expiresIn: '24h' }),
    ids: shuffled(seeded.ids, prng(2)).slice(0, idSample),
    backend: { db: core.db.kind, vectors: core.vectors.name, embedder: core.embeddings.model },
    seeding: {
      memories: seeded.ids.length,
      merged: seeded.merged,
      seconds: seeded.seconds,
      perSecond,
      concurrency,
      projects: PROJECTS.length,
      otherTenants,
      otherTenantMemories,
    },
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`rest-server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
