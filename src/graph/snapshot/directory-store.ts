import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { assertKey, assertPrefix, type SnapshotBody, type SnapshotStore } from './store.js';

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/** fsync a directory so a rename in it survives a power cut, not only a process crash. */
async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Snapshots as files under one root directory (embedded mode). A put writes a dot-named temp file
 * in the target's own directory, fsyncs it and renames it into place: rename within a directory is
 * atomic, so a crash leaves either the old state or the new one plus a stray temp file, never a
 * half-written object under its real name.
 */
export class DirectorySnapshotStore implements SnapshotStore {
  readonly description: string;
  private readonly root: string;

  constructor(dir: string) {
    this.root = path.resolve(dir);
    this.description = `dir:${this.root}`;
  }

  private pathOf(key: string): string {
    return path.join(this.root, ...assertKey(key).split('/'));
  }

  async put(key: string, body: SnapshotBody): Promise<void> {
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    await fs.mkdir(dir, { recursive: true });
    const temp = path.join(dir, `.${path.basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
    try {
      if (body instanceof Uint8Array) {
        await fs.writeFile(temp, body);
      } else {
        await fs.copyFile(body.file, temp);
      }
      const handle = await fs.open(temp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, target);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    await syncDir(dir);
  }

  async get(key: string): Promise<Uint8Array | null> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async getToFile(key: string, file: string): Promise<boolean> {
    try {
      await fs.copyFile(this.pathOf(key), file);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    assertPrefix(prefix);
    // Only the directory the prefix ends in (and below) can hold matching keys.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(path.join(this.root, ...rel.split('/').filter(Boolean)), { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.')) continue;
        const key = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || `${key}/`.startsWith(prefix)) await walk(key);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          keys.push(key);
        }
      }
    };
    await walk(base);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const target = this.pathOf(key);
    await fs.rm(target, { force: true });
    // Empty snapshot folders would pile up one per snapshot ever written; stop at the first
    // folder that still holds something (rmdir refuses a non-empty one) and never above the root.
    let dir = path.dirname(target);
    while (dir.startsWith(`${this.root}${path.sep}`)) {
      try {
        await fs.rmdir(dir);
      } catch {
        break;
      }
      dir = path.dirname(dir);
    }
  }

  async close(): Promise<void> {}
}
