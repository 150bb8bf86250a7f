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
