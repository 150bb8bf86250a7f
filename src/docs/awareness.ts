import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { AeternaError } from '../protocol/index.js';

/**
 * One client's entry in a y-protocols awareness update. The state stays JSON text: the server
 * relays it and never needs the object, and re-serialising could change what clients compare.
 */
export interface AwarenessEntry {
  clientId: number;
  clock: number;
  /** JSON text; `null` marks the client as gone. */
  state: string;
}

export const REMOVED_STATE = 'null';

/** Decodes the wire format of y-protocols/awareness `encodeAwarenessUpdate`, refusing anything else. */
export function readAwarenessUpdate(update: Uint8Array): AwarenessEntry[] {
  try {
    const decoder = decoding.createDecoder(update);
    const count = decoding.readVarUint(decoder);
    const entries: AwarenessEntry[] = [];
    for (let i = 0; i < count; i++) {
      const clientId = decoding.readVarUint(decoder);
      const clock = decoding.readVarUint(decoder);
      const state = decoding.readVarString(decoder);
      // Clients JSON.parse every state they receive: relaying one that fails would break them all.
      JSON.parse(state);
      entries.push({ clientId, clock, state });
    }
    if (decoding.hasContent(decoder)) throw new Error('trailing bytes after the update');
    return entries;
  } catch (err) {
    throw new AeternaError('INVALID_ARGUMENT', `not a y-protocols awareness update: ${(err as Error).message}`);
  }
}

export function writeAwarenessUpdate(entries: Iterable<AwarenessEntry>): Uint8Array {
  const list = [...entries];
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, list.length);
  for (const { clientId, clock, state } of list) {
    encoding.writeVarUint(encoder, clientId);
    encoding.writeVarUint(encoder, clock);
    encoding.writeVarString(encoder, state);
  }
  return encoding.toUint8Array(encoder);
}

/**
 * Whether `next` replaces `current` for the same client, as y-protocols' applyAwarenessUpdate
 * decides it: a newer clock wins, and at the same clock a removal wins.
 */
function supersedes(next: AwarenessEntry, current: AwarenessEntry | undefined): boolean {
  return current === undefined || next.clock > current.clock || (next.clock === current.clock && next.state === REMOVED_STATE);
}

/**
 * Collects the awareness updates of one document over a short window and hands them out as one
 * update holding only the newest entry per client. Editors move cursors many times a second; without
 * this every move of each of N editors is one message to each of the others.
 */
export class AwarenessMerger {
  private readonly entries = new Map<number, AwarenessEntry>();

  add(entries: Iterable<AwarenessEntry>): void {
    for (const entry of entries) {
      if (supersedes(entry, this.entries.get(entry.clientId))) this.entries.set(entry.clientId, entry);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** The merged update, or null when nothing arrived since the last take. Empties the merger. */
  take(): Uint8Array | null {
    if (this.entries.size === 0) return null;
    const update = writeAwarenessUpdate(this.entries.values());
    this.entries.clear();
    return update;
  }
}
