import { DuckPool, duckRows, inList, type DuckParams } from '../src/graph/duck.js';
import { prepareProjection } from '../src/graph/projection.js';
import { expand, visibleNodes, loadNodes, loadEdges, type View } from '../src/graph/traverse.js';
import { createHash } from 'node:crypto';
const pool = await DuckPool.open(':memory:');
await pool.use(async (c) => {
  await prepareProjection(c);
  const nodeSql = (tenant: string, n: number) => `INSERT INTO graph_nodes SELECT '${tenant}', 'n-'||md5(i::VARCHAR), 'Entity '||i, 'code', '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(${n}) r(i)`;
  const edgeSql = (tenant: string, n: number, m: number) => `INSERT INTO graph_edges SELECT '${tenant}', 'e-'||md5('e'||i::VARCHAR), 'n-'||md5((hash(i) % ${n})::VARCHAR), 'n-'||md5((hash(i*7+1) % ${n})::VARCHAR), 'rel'||(i%5), 0.5, '{}'::JSON, NULL, TIMESTAMPTZ '2024-01-01', NULL, TIMESTAMPTZ '2024-01-01', NULL, 1 FROM range(${m}) r(i)`;
  await c.run(nodeSql('big', 100_000));
  await c.run(edgeSql('big', 100_000, 1_000_000));
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
  await time('expand out 1', async (k) => (await expand(view, [id(k)], 'out')).length);
  await time('expand both 1', async (k) => (await expand(view, [id(k)], 'both')).length);
  await time('expand out 50', async (k) => (await expand(view, ids(k, 50), 'out')).length);
  await time('visibleNodes 1', async (k) => (await visibleNodes(view, [id(k)])).size);
  await time('visibleNodes 50', async (k) => (await visibleNodes(view, ids(k, 50))).size);
  await time('loadNodes 10', async (k) => (await loadNodes(view, ids(k, 10))).size);
  await time('loadEdges 10', async (k) => (await loadEdges(view, ids(k, 10))).length);
  const raw = async (sql: string, params: DuckParams) => (await duckRows(conn, sql, params)).length;
  await time('raw src IN 1 (cte)', async (k) => { const p: DuckParams = {}; return raw(`WITH c AS MATERIALIZED (SELECT * FROM graph_edges WHERE ${inList('source', [id(k)], p, 'o')}) SELECT id FROM c`, p); });
  await time('raw src = const', async (k) => raw(`SELECT id FROM graph_edges WHERE source = '${id(k)}'`, {}));
  await time('raw src = $x', async (k) => raw(`SELECT id FROM graph_edges WHERE source = $x`, { x: id(k) }));
  await time('raw src IN ($x)', async (k) => raw(`SELECT id FROM graph_edges WHERE source IN ($x)`, { x: id(k) }));
  await time('raw src IN ($x::VARCHAR)', async (k) => raw(`SELECT id FROM graph_edges WHERE source IN ($x::VARCHAR)`, { x: id(k) }));
  await time('raw node id = $x', async (k) => raw(`SELECT id FROM graph_nodes WHERE id = $x`, { x: id(k) }));
  await time('raw node tenant+id', async (k) => raw(`SELECT id FROM graph_nodes WHERE tenant_id = 'big' AND id = $x`, { x: id(k) }));
  await time('raw edge id tenant+id', async (k) => raw(`SELECT id FROM graph_edges WHERE tenant_id = 'big' AND id = $x`, { x: id(k) }));
  const plan = await duckRows<{ explain_value: string }>(conn, `EXPLAIN WITH c AS MATERIALIZED (SELECT * FROM graph_edges WHERE source IN ($o0::VARCHAR)) SELECT id FROM c`, { o0: id(1) });
  console.log(plan.map((p) => p.explain_value).join('\n'));
});
pool.close();
