import { DuckPool } from '/work/main/src/graph/duck.js';
import { prepareProjection } from '/work/main/src/graph/projection.js';
import { neighbors, requireNode, shortestPath, related, type View } from '/work/main/src/graph/traverse.js';
import { textSearch } from '/work/main/src/graph/queries.js';

const noIndex = process.argv.includes('noidx');
const pool = await DuckPool.open(':memory:');
await pool.use(async (c) => {
  await prepareProjection(c);
  if (noIndex) { await c.run('DROP INDEX graph_edges_source'); await c.run('DROP INDEX graph_edges_target'); }
  const t0 = performance.now();
  const nodeSql = (tenant: string, n: number) => `INSERT INTO graph_nodes SELECT '${tenant}', 'n-'||md5(i::VARCHAR), 'Entity '||i, CASE WHEN i%3=0 THEN 'entity' ELSE 'code' END, '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(${n}) r(i)`;
  const edgeSql = (tenant: string, n: number, m: number) => `INSERT INTO graph_edges SELECT '${tenant}', 'e-'||md5('e'||i::VARCHAR), 'n-'||md5((hash(i) % ${n})::VARCHAR), 'n-'||md5((hash(i*7+1) % ${n})::VARCHAR), 'rel'||(i%5), 0.5 + (i%50)/100.0, '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(${m}) r(i)`;
  await c.run(nodeSql('big', 100_000));
  await c.run(edgeSql('big', 100_000, 1_000_000));
  for (let t = 0; t < 9; t++) { await c.run(nodeSql(`small${t}`, 1000)); await c.run(edgeSql(`small${t}`, 1000, 5000)); }
  console.log('load ms', Math.round(performance.now() - t0));
});
const md5 = async (i: number) => (await import('node:crypto')).createHash('md5').update(String(i)).digest('hex');
const pct = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * p))]!;
async function time(name: string, runs: number, fn: (k: number) => Promise<unknown>) {
  const ts: number[] = [];
  let last: unknown;
  for (let k = 0; k < runs; k++) { const s = performance.now(); last = await fn(k); ts.push(performance.now() - s); }
  console.log(name.padEnd(34), 'p50', pct(ts, 0.5).toFixed(1), 'p95', pct(ts, 0.95).toFixed(1), 'ms', typeof last === 'object' && last ? JSON.stringify(last).slice(0, 80) : last);
}
await pool.use(async (conn) => {
  const view: View = { conn, tenantId: 'big', at: new Date().toISOString() };
  const id = async (k: number) => 'n-' + (await md5((k * 7919) % 100_000));
  await time('requireNode', 20, async (k) => (await requireNode(view, await id(k))).id);
  for (const depth of [1, 2, 3]) {
    await time(`neighbors out depth ${depth} limit 1000`, 20, async (k) => (await neighbors(view, await requireNode(view, await id(k)), { depth, direction: 'out', limit: 1000 })).neighbors.length);
    await time(`neighbors both depth ${depth} limit 1000`, 20, async (k) => (await neighbors(view, await requireNode(view, await id(k)), { depth, direction: 'both', limit: 1000 })).neighbors.length);
  }
  await time('path out maxDepth 5', 20, async (k) => (await shortestPath(view, await id(k), await id(k + 1000), { maxDepth: 5, direction: 'out' }))?.steps.length ?? 'none');
  await time('path both maxDepth 5', 20, async (k) => (await shortestPath(view, await id(k), await id(k + 1000), { maxDepth: 5, direction: 'both' }))?.steps.length ?? 'none');
  await time('path out, no path (isolated rel)', 10, async (k) => (await shortestPath(view, await id(k), await id(k + 1000), { maxDepth: 5, direction: 'out', relations: ['nope'] }))?.steps.length ?? 'none');
  await time('related hops 2', 20, async (k) => (await related(view, await id(k), { hops: 2, limit: 20 })).length);
  await time('search text', 20, async (k) => (await textSearch(view, { q: `Entity ${k * 37}`, limit: 20 })).results.length);
});
pool.close();
