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
  /** Ticks per process of ours, by pid. */
  ours: Map<number, number>;
}

function machineTicks(): { total: number; busy: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  // user nice system idle iowait irq softirq steal; guest time is already inside user and nice.
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { total, busy: total - idle };
}

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: count fields from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return undefined;
  }
}

/** PostgreSQL backends serving `database`: their titles read "postgres: <user> <database> …". */
function backendsOf(database: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (title.startsWith('postgres: ') && title.split(/[\s\0]+/).includes(database)) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

export function snapshot(pids: readonly number[], database: string | undefined): CpuSnapshot | undefined {
  try {
    const ours = new Map<number, number>();
    for (const pid of [...pids, ...(database ? backendsOf(database) : [])]) {
      const ticks = processTicks(pid);
      if (ticks !== undefined) ours.set(pid, ticks);
    }
    return { ...machineTicks(), ours };
  } catch {
    return undefined;
  }
}

/** The share (0..1) of all CPU time between two snapshots that went to other processes. */
export function foreignShare(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  let ours = 0;
  // A process born during the round counts from zero; one that died took its ticks along (rare).
  for (const [pid, ticks] of after.ours) ours += ticks - (before.ours.get(pid) ?? 0);
  return Math.max(0, (after.busy - before.busy - ours) / (after.total - before.total));
}
