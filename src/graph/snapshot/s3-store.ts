import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import type { SnapshotStoreConfig } from '../../config.js';
import { AeternaError } from '../../protocol/index.js';
import { assertKey, assertPrefix, type SnapshotBody, type SnapshotStore } from './store.js';

export type S3SnapshotStoreConfig = Extract<SnapshotStoreConfig, { kind: 's3' }>;

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Store failures are outages from the caller's point of view; the SDK's text names the cause. */
function unavailable(what: string, key: string, err: unknown): AeternaError {
  return new AeternaError('UNAVAILABLE', `snapshot store: ${what} ${key} failed: ${(err as Error).message}`, { key });
}

/**
 * Snapshots as objects in an S3-compatible bucket (cluster mode). A single PutObject is atomic
 * (readers see the old object or the new one), so no temp-and-rename is needed here; objects
 * are limited to S3's 5 GiB single-PUT size, far above one table of one tenant.
 */
export class S3SnapshotStore implements SnapshotStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(config: S3SnapshotStoreConfig) {
    this.bucket = config.bucket;
    this.prefix = config.prefix ? `${config.prefix}/` : '';
    this.description = `s3://${config.bucket}/${this.prefix}${config.endpoint ? ` at ${config.endpoint}` : ''}`;
    this.client = new S3Client({
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      ...(config.accessKeyId && config.secretAccessKey
        ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } }
        : {}),
      // The SDK's default CRC trailers are not understood by many S3-compatible servers; the
      // snapshot manifest carries its own sha256 of every file, checked on restore.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private objectKey(key: string): string {
    return `${this.prefix}${assertKey(key)}`;
  }

  async put(key: string, body: SnapshotBody): Promise<void> {
    const Key = this.objectKey(key);
    try {
      if (body instanceof Uint8Array) {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.byteLength }));
      } else {
        const { size } = await fs.stat(body.file);
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key, Body: createReadStream(body.file), ContentLength: size }),
        );
      }
    } catch (err) {
      throw unavailable('put', key, err);
    }
  }

  private async fetch(key: string): Promise<GetObjectCommandOutput['Body'] | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return out.Body ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw unavailable('get', key, err);
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    const body = await this.fetch(key);
    return body ? body.transformToByteArray() : null;
  }

  async getToFile(key: string, file: string): Promise<boolean> {
    const body = await this.fetch(key);
    if (!body) return false;
    if (!(body instanceof Readable)) throw new AeternaError('INTERNAL', 'snapshot store: S3 body is not a Node stream');
    try {
      await pipeline(body, createWriteStream(file));
    } catch (err) {
      await fs.rm(file, { force: true });
      throw unavailable('download', key, err);
    }
    return true;
  }

  async list(prefix: string): Promise<string[]> {
    const Prefix = `${this.prefix}${assertPrefix(prefix)}`;
    const keys: string[] = [];
    let ContinuationToken: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ...(ContinuationToken ? { ContinuationToken } : {}) }),
        );
        for (const object of page.Contents ?? []) {
          if (object.Key?.startsWith(Prefix)) keys.push(object.Key.slice(this.prefix.length));
        }
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
    } catch (err) {
      throw unavailable('list', prefix, err);
    }
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (!isNotFound(err)) throw unavailable('delete', key, err);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
