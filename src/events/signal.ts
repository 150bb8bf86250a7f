/**
 * The Redis channel that carries commit signals between processes: every writer (gateway or
 * worker) publishes its tenant ids here, and every gateway nudges its relay with them.
 */
export const COMMITS_CHANNEL = 'aeterna:commits';

/**
 * "Tenant X committed events": a hint, not data. Listeners re-read the log, so a lost or repeated
 * signal costs latency, never correctness.
 */
export class CommitSignal {
  private readonly listeners = new Set<(tenantId: string) => void>();

  notify(tenantId: string): void {
    for (const listener of this.listeners) listener(tenantId);
  }

  subscribe(listener: (tenantId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
