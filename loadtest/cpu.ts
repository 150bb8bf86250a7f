/**
 * How much of the machine's CPU went to processes that are not this benchmark's, per round.
 *
 * On a small shared machine a compile or a test run elsewhere can halve one transport's round and
 * invert the ratio; the load average cannot tell that apart from our own load. Linux only (it
 * reads /proc); elsewhere every figure is undefined and nothing is flagged.
 */
import { readFileSync, readdirSync } from 'node:fs';

export interface CpuSnapshot {
  /** Clock ticks since boot, all CPUs. */
  total: number;
  busy: number;
  /** Ticks used by our processes, PostgreSQL's reaped children included. */
  ours: number;
}

function machineTicks(): { total: number; busy: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  // user nice system idle iowait irq softirq steal; guest time is already inside user and nice.
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { total, busy: total - idle };
}

interface Proc {
  pid: number;
  ppid: number;
  /** utime + stime. */
  ticks: number;
  /** cutime + cstime: children that exited and were waited for. */
  reaped: number;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: count fields from the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return { pid, ppid: f[1] ?? 0, ticks: (f[11] ?? 0) + (f[12] ?? 0), reaped: (f[13] ?? 0) + (f[14] ?? 0) };
  } catch {
    return undefined; // exited while we looked
  }
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

const postmasters = new Map<string, number>();

/**
 * The postmaster serving `database`, found through one of its backends (titled "postgres: <user>
 * <database> …"). Its whole tree is ours: backends, parallel workers, checkpointer, walwriter.
 */
export function postmasterOf(database: string): number | undefined {
  const known = postmasters.get(database);
  if (known !== undefined) return known;
  try {
    for (const pid of pids()) {
      let title: string;
      try {
        title = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (!title.startsWith('postgres: ') || !title.split(/[\s\0]+/).includes(database)) continue;
      const ppid = readProc(pid)?.ppid;
      if (ppid !== undefined) postmasters.set(database, ppid);
      return ppid;
    }
  } catch {
    // no /proc
  }
  return undefined;
}

/**
 * `roots` count with their own time. With `database`, so does the PostgreSQL server behind it,
 * whole: its live children and the children it has reaped, so a parallel worker that lived and
 * died within a round is still ours.
 */
export function snapshot(roots: readonly number[], database?: string): CpuSnapshot | undefined {
  try {
    const tree = database === undefined ? undefined : postmasterOf(database);
    // A caller may list the postmaster among the roots too; the tree below already counts it.
    const members = roots.filter((pid) => pid !== tree);
    if (tree !== undefined) members.push(...pids().filter((pid) => readProc(pid)?.ppid === tree));
    // Walking /proc is slow on a loaded machine, and every tick the CPUs spend meanwhile lands in
    // the machine's count but not ours. So the walk above only finds the processes; their counters
    // are read in one quick pass, between two reads of the machine's, which are averaged.
    const first = machineTicks();
    let ours = members.reduce((sum, pid) => sum + (readProc(pid)?.ticks ?? 0), 0);
    if (tree !== undefined) {
      const root = readProc(tree);
      ours += root ? root.ticks + root.reaped : 0;
    }
    const second = machineTicks();
    return { total: (first.total + second.total) / 2, busy: (first.busy + second.busy) / 2, ours };
  } catch {
    return undefined;
  }
}

/** The share (0..1) of all CPU time between two snapshots that went to other processes. */
export function foreignShare(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return Math.max(0, (after.busy - before.busy - (after.ours - before.ours)) / (after.total - before.total));
}
