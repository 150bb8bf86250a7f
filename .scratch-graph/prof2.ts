import { DuckPool, duckRows, inList, type DuckParams } from '../src/graph/duck.js';
import { prepareProjection } from '../src/graph/projection.js';
import { visibleAt } from '../src/graph/rows.js';
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
  console.log(name.padEnd(40), 'p50', pct(ts, 0.5).toFixed(1), String(last).slice(0, 60));
}
await pool.use(async (conn) => {
  const at = new Date().toISOString();
  const id = (k: number) => 'n-' + md5((k * 7919) % 100_000);
  const ids = (k: number, n: number) => Array.from({ length: n }, (_, i) => 'n-' + md5((k * 7919 + i * 31) % 100_000));
  const raw = async (sql: string, params: DuckParams) => (await duckRows(conn, sql, params)).length;
  const q = (k: number, n: number, body: (w: string) => string) => { const p: DuckParams = { tenant: 'big', at }; const w = inList('id', ids(k, n), p, 'n'); return raw(body(w), p); };
  await time('nodes IN10 alone', (k) => q(k, 10, (w) => `SELECT * FROM graph_nodes WHERE ${w}`));
  await time('nodes IN10 + tenant', (k) => q(k, 10, (w) => `SELECT * FROM graph_nodes WHERE tenant_id = $tenant AND ${w}`));
  await time('nodes IN10 cte + tenant', (k) => q(k, 10, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_nodes WHERE ${w}) SELECT * FROM c WHERE tenant_id = $tenant`));
  await time('nodes IN10 cte + tenant + vis', (k) => q(k, 10, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_nodes WHERE ${w}) SELECT * FROM c WHERE tenant_id = $tenant AND ${visibleAt('c')}`));
  await time('nodes IN10 + vis no cte', (k) => q(k, 10, (w) => `SELECT * FROM graph_nodes c WHERE tenant_id = $tenant AND ${w} AND ${visibleAt('c')}`));
  await time('nodes IN200 cte + tenant', (k) => q(k, 200, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_nodes WHERE ${w}) SELECT * FROM c WHERE tenant_id = $tenant`));
  await time('nodes IN300(unnest) cte + tenant', (k) => q(k, 300, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_nodes WHERE ${w}) SELECT * FROM c WHERE tenant_id = $tenant`));
  const e = (k: number, n: number, body: (w: string) => string) => { const p: DuckParams = { tenant: 'big', at }; const w = inList('source', ids(k, n), p, 'o'); return raw(body(w), p); };
  await time('edges src1 cte', (k) => e(k, 1, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_edges WHERE ${w}) SELECT id FROM c WHERE tenant_id = $tenant`));
  await time('edges src1 cte vis', (k) => e(k, 1, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_edges WHERE ${w}) SELECT id FROM c WHERE tenant_id = $tenant AND ${visibleAt('c')}`));
  await time('edges src1 cte vis distinct order', (k) => e(k, 1, (w) => `WITH c AS MATERIALIZED (SELECT * FROM graph_edges WHERE ${w}) SELECT DISTINCT id, source FROM c WHERE tenant_id = $tenant AND ${visibleAt('c')} ORDER BY id`));
  await time('edges src1 cte core cols', (k) => e(k, 1, (w) => `WITH c AS MATERIALIZED (SELECT id, tenant_id, source, target, relation, weight, valid_from, valid_to, created_at, deleted_at FROM graph_edges WHERE ${w}) SELECT id FROM c WHERE tenant_id = $tenant AND ${visibleAt('c')}`));
  await time('edges src50 cte core cols', (k) => e(k, 50, (w) => `WITH c AS MATERIALIZED (SELECT id, tenant_id, source, target, relation, weight, valid_from, valid_to, created_at, deleted_at FROM graph_edges WHERE ${w}) SELECT id FROM c WHERE tenant_id = $tenant AND ${visibleAt('c')}`));
  await time('edges src50 plain IN no cte', (k) => e(k, 50, (w) => `SELECT id FROM graph_edges WHERE ${w}`));
  await time('edges src50 union of =', (k) => { const p: DuckParams = {}; const l = ids(k, 50); l.forEach((x, i) => (p[`o${i}`] = x)); return raw(l.map((_, i) => `SELECT id FROM graph_edges WHERE source = $o${i}`).join(' UNION ALL '), p); });
});
pool.close();
