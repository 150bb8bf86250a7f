/**
 * A local S3-compatible server (s3rver, in this process) for tests of code that talks S3: a fresh
 * temp directory, a free 127.0.0.1 port, one bucket. Nothing outside the machine is contacted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** The part of s3rver's API used here (the package ships no types). */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string; configs: string[] }[];
}) => S3rverInstance;

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

export interface TestS3 {
  /** http://127.0.0.1:{port}; use with forcePathStyle (bucket names do not resolve as hosts). */
  endpoint: string;
  bucket: string;
  region: string;
  /** The credentials s3rver checks signatures against. */
  accessKeyId: string;
  secretAccessKey: string;
  /** Stops the server and removes its directory; idempotent. */
  stop(): Promise<void>;
}

export async function startTestS3(bucket = 'aeterna-test'): Promise<TestS3> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'aeterna-s3-'));
  // Port 0: the kernel picks a free one at bind time, so there is no race to lose.
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
