/** Listener signatures by event name (an interface works too: no index signature needed). */
export type EventMap<E> = { [K in keyof E]: (...args: never[]) => void };

/**
 * A minimal typed emitter, so the client runs wherever socket.io-client does (node:events is
 * not available in browsers without a polyfill). A throwing listener does not stop the others.
 */
export class TypedEmitter<E extends EventMap<E>> {
  private readonly listeners = new Map<keyof E, Set<E[keyof E]>>();

  on<K extends keyof E>(event: K, listener: E[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof E>(event: K, listener: E[K]): void {
    this.listeners.get(event)?.delete(listener);
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as (...a: Parameters<E[K]>) => void)(...args);
      } catch (err) {
        this.onListenerError(event, err);
      }
    }
  }

  /** Where a listener's exception goes; the default rethrows it outside the emit loop. */
  protected onListenerError(_event: keyof E, err: unknown): void {
    queueMicrotask(() => {
      throw err;
    });
  }
}
