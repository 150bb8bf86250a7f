import { DuckPool, duckRows, inList, type DuckParams } from '../src/graph/duck.js';
import { prepareProjection } from '../src/graph/projection.js';
import { expand, visibleNodes, loadNodes, loadEdges, requireNode, type View } from '../src/graph/traverse.js';
import { createHash } from 'node:crypto';
const pool = await DuckPool.open(':memory:');
await pool.use(async (c) => {
  await prepareProjection(c);
  await c.run(`INSERT INTO graph_nodes SELECT 'big', 'n-'||md5(i::VARCHAR), 'Entity '||i, 'code', '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(100000) r(i)`);
  await c.run(`INSERT INTO graph_edges SELECT 'big', 'e-'||md5('e'||i::VARCHAR), 'n-'||md5((hash(i) % 100000)::VARCHAR), 'n-'||md5((hash(i*7+1) % 100000)::VARCHAR), 'rel'||(i%5), 0.5, '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(1000000) r(i)`);
});
const md5 = (i: number) => createHash('md5').update(String(i)).digest('hex');
const pct = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.floor(a.length * p)]!;
async function time(name: string, fn: (k: number) => Promise<unknown>) {
  const ts: number[] = []; let last: unknown;
  for (let k = 0; k < 15; k++) { const s = performance.now(); last = await fn(k); ts.push(performance.now() - s); }
  console.log(name.padEnd(30), 'p50', pct(ts, 0.5).toFixed(1), String(last).slice(0, 60));
}
await pool.use(async (conn) => {
  const view: View = { conn, tenantId: 'big', at: new Date().toISOString() };
  const id = (k: number) => 'n-' + md5((k * 7919) % 100_000);
  const ids = (k: number, n: number) => Array.from({ length: n }, (_, i) => 'n-' + md5((k * 7919 + i * 31) % 100_000));
  const eids = (k: number, n: number) => Array.from({ length: n }, (_, i) => 'e-' + md5('e' + ((k * 7919 + i * 31) % 1_000_000)));
  await time('requireNode', async (k) => (await requireNode(view, id(k))).id);
  await time('expand out 1', async (k) => (await expand(view, [id(k)], 'out')).length);
  await time('visibleNodes 10', async (k) => (await visibleNodes(view, ids(k, 10))).size);
  await time('loadNodes 10', async (k) => (await loadNodes(view, ids(k, 10))).size);
  await time('loadEdges 10', async (k) => (await loadEdges(view, eids(k, 10))).length);
  const raw = async (sql: string, params: DuckParams) => (await duckRows(conn, sql, params)).length;
  await time('edges tenant + id IN 10', async (k) => { const p: DuckParams = { tenant: 'big' }; return raw(`SELECT * FROM graph_edges WHERE tenant_id = $tenant AND ${inList('id', eids(k, 10), p, 'x')}`, p); });
  await time('edges (tenant,id) IN 10', async (k) => { const p: DuckParams = { tenant: 'big' }; const l = eids(k, 10); l.forEach((x, i) => (p[`x${i}`] = x)); return raw(`SELECT * FROM graph_edges WHERE (tenant_id, id) IN (${l.map((_, i) => `($tenant, $x${i})`).join(', ')})`, p); });
  await time('edges OR of (tenant=,id=) 10', async (k) => { const p: DuckParams = { tenant: 'big' }; const l = eids(k, 10); l.forEach((x, i) => (p[`x${i}`] = x)); return raw(`SELECT * FROM graph_edges WHERE ${l.map((_, i) => `(tenant_id = $tenant AND id = $x${i})`).join(' OR ')}`, p); });
  await time('edges tenant= id= 1', async (k) => raw(`SELECT * FROM graph_edges WHERE tenant_id = $tenant AND id = $x`, { tenant: 'big', x: eids(k, 1)[0]! }));
});
pool.close();
