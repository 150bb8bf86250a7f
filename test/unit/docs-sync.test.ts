import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import * as syncProtocol from 'y-protocols/sync';
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { readSyncMessage, syncStep1Message, syncStep2Message, syncUpdateMessage } from '../../src/docs/index.js';

function docWith(text: string): Y.Doc {
  const doc = new Y.Doc();
  doc.getText('t').insert(0, text);
  return doc;
}

function written(write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder();
  write(encoder);
  return encoding.toUint8Array(encoder);
}

describe('y-protocols sync messages without a Y.Doc', () => {
  it("reads the messages y-protocols' own writers produce", () => {
    const doc = docWith('hello');
    expect(readSyncMessage(written((e) => syncProtocol.writeSyncStep1(e, doc)))).toEqual({ type: 'step1', stateVector: Y.encodeStateVector(doc) });
    expect(readSyncMessage(written((e) => syncProtocol.writeSyncStep2(e, doc)))).toEqual({ type: 'step2', update: Y.encodeStateAsUpdate(doc) });
    const update = Y.encodeStateAsUpdate(doc);
    expect(readSyncMessage(written((e) => syncProtocol.writeUpdate(e, update)))).toEqual({ type: 'update', update });
  });

  it('writes messages a y-protocols peer applies', () => {
    const source = docWith('shared text');
    const peer = new Y.Doc();
    const answer = written((e) => syncProtocol.readSyncMessage(decoding.createDecoder(syncStep2Message(Y.encodeStateAsUpdate(source))), e, peer, 'test'));
    expect(answer.byteLength).toBe(0);
    expect(peer.getText('t').toString()).toBe('shared text');

    const asked = written((e) => syncProtocol.readSyncMessage(decoding.createDecoder(syncStep1Message(Y.encodeStateVector(new Y.Doc()))), e, source, 'test'));
    expect(readSyncMessage(asked)).toEqual({ type: 'step2', update: Y.encodeStateAsUpdate(source, Y.encodeStateVector(new Y.Doc())) });

    const later = docWith('!');
    syncProtocol.readSyncMessage(decoding.createDecoder(syncUpdateMessage(Y.encodeStateAsUpdate(later))), encoding.createEncoder(), peer, 'test');
    expect(peer.getText('t').toString()).toHaveLength('shared text!'.length);
  });

  it.each([
    ['empty bytes', new Uint8Array()],
    ['an unknown message type', Uint8Array.of(7, 0)],
    ['a truncated payload', Uint8Array.of(1, 5, 1, 2)],
    ['trailing bytes', Uint8Array.of(2, 2, 0, 0, 9)],
    ['a step 1 whose state vector is garbage', Uint8Array.of(0, 2, 200, 200)],
  ])('refuses %s with INVALID_ARGUMENT', (_name, bytes) => {
    expect(() => readSyncMessage(bytes)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
