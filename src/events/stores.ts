import type { Redis } from 'ioredis';

/**
 * Who relays which partition. A lease is held by renewing it before its TTL runs out; a dead
 * node's leases lapse and another node takes them.
 */
export interface LeaseStore {
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** False when the lease was lost (expired and taken): stop relaying that partition at once. */
  renew(key: string, owner: string, ttlMs: number): Promise<boolean>;
  release(key: string, owner: string): Promise<void>;
}

/** One process owns everything: embedded mode. */
export class LocalLeaseStore implements LeaseStore {
  private readonly owners = new Map<string, string>();
  async acquire(key: string, owner: string): Promise<boolean> {
    const current = this.owners.get(key);
    if (current !== undefined && current !== owner) return false;
    this.owners.set(key, owner);
    return true;
  }
  async renew(key: string, owner: string): Promise<boolean> {
    return this.owners.get(key) === owner;
  }
  async release(key: string, owner: string): Promise<void> {
    if (this.owners.get(key) === owner) this.owners.delete(key);
  }
}

// Renew or release only if we still own it: a lease that lapsed and was taken must stay taken.
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/** Leases as Redis keys with a TTL (SET NX PX). System keys, so `aeterna:` rather than a tenant prefix. */
export class RedisLeaseStore implements LeaseStore {
  constructor(private readonly redis: Redis) {}
  async acquire(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`aeterna:lease:${key}`, owner, 'PX', ttlMs, 'NX')) === 'OK';
  }
  async renew(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return Number(await this.redis.eval(RENEW, 1, `aeterna:lease:${key}`, owner, String(ttlMs))) === 1;
  }
  async release(key: string, owner: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, `aeterna:lease:${key}`, owner);
  }
}
