import { describe, expect, it } from 'vitest';
import { errorSignature, normaliseErrorMessage, stackFrames } from '../../src/cca/index.js';

const v8Stack = (dir: string, line: number) =>
  [
    'TypeError: Cannot read properties of undefined',
    `    at parseUser (${dir}/src/users.ts:${line}:17)`,
    `    at async loadProfile (${dir}/src/profile.ts:${line + 40}:5)`,
    `    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)`,
    `    at Router.handle (${dir}/node_modules/express/lib/router/index.js:284:7)`,
    `    at ${dir}/src/main.ts:3:1`,
  ].join('\n');

/** Pairs that differ only in ids, numbers, times, line numbers, paths or quoted values. */
const SAME: [string, { errorType: string; message: string; stack?: string }, { errorType: string; message: string; stack?: string }][] = [
  [
    'uuids',
    { errorType: 'NotFoundError', message: 'order 3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f not found' },
    { errorType: 'NotFoundError', message: 'order a0000000-1111-4222-8333-444444444444 not found' },
  ],
  ['numbers and units', { errorType: 'TimeoutError', message: 'query took 5012ms (limit 5000ms) on shard 7' }, { errorType: 'TimeoutError', message: 'query took 61234ms (limit 30000ms) on shard 12' }],
  ['hex ids', { errorType: 'Error', message: 'object 507f1f77bcf86cd799439011 at 0x7ffd5e8c locked' }, { errorType: 'Error', message: 'object 5f8d0d55b54764421b7156c9 at 0x1a2b locked' }],
  [
    'timestamps and dates',
    { errorType: 'TokenExpiredError', message: 'jwt expired at 2024-03-01T10:15:30.123Z (now 2024-03-01 10:20:00)' },
    { errorType: 'TokenExpiredError', message: 'jwt expired at 2025-11-25T23:59:59Z (now 2025-11-26 00:00:01)' },
  ],
  ['quoted values', { errorType: 'Error', message: `Cannot find module 'left-pad' from "src/app.ts"` }, { errorType: 'Error', message: `Cannot find module 'lodash' from "lib/index.ts"` }],
  [
    'file paths and line:col',
    { errorType: 'SyntaxError', message: 'Unexpected token in /home/ann/work/app/src/config.ts:12:5' },
    { errorType: 'SyntaxError', message: 'Unexpected token in /srv/build/7/app/src/config.ts:98:31' },
  ],
  [
    'stacks from different machines and lines',
    { errorType: 'TypeError', message: 'Cannot read properties of undefined', stack: v8Stack('/home/ann/app', 12) },
    { errorType: 'TypeError', message: 'Cannot read properties of undefined', stack: v8Stack('/opt/ci/build-4411/app', 97) },
  ],
  ['whitespace', { errorType: 'Error', message: 'connection   refused\n by peer' }, { errorType: 'Error', message: 'connection refused by peer' }],
];

const DIFFERENT: [string, { errorType: string; message: string; stack?: string }, { errorType: string; message: string; stack?: string }][] = [
  ['message words', { errorType: 'Error', message: 'connection refused' }, { errorType: 'Error', message: 'connection reset' }],
  ['error type', { errorType: 'TypeError', message: 'x is not a function' }, { errorType: 'RangeError', message: 'x is not a function' }],
  [
    'top frame',
    { errorType: 'TypeError', message: 'boom', stack: 'TypeError: boom\n    at parseUser (/a/users.ts:1:1)' },
    { errorType: 'TypeError', message: 'boom', stack: 'TypeError: boom\n    at parseOrder (/a/orders.ts:1:1)' },
  ],
  ['file name', { errorType: 'SyntaxError', message: 'Unexpected token in /a/src/config.ts:1:1' }, { errorType: 'SyntaxError', message: 'Unexpected token in /a/src/routes.ts:1:1' }],
];

describe('error signatures', () => {
  it.each(SAME)('are the same when only %s differ', (_what, a, b) => {
    const sa = errorSignature(a, 3);
    const sb = errorSignature(b, 3);
    expect(sa.text).toBe(sb.text);
    expect(sa.hash).toBe(sb.hash);
  });

  it.each(DIFFERENT)('differ when the %s differs', (_what, a, b) => {
    expect(errorSignature(a, 3).hash).not.toBe(errorSignature(b, 3).hash);
  });

  it('masks each kind of variable part', () => {
    expect(normaliseErrorMessage('order 3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f not found')).toBe('order <uuid> not found');
    expect(normaliseErrorMessage('took 5012ms on port 5432 (retry 3)')).toBe('took <n>ms on port <n> (retry <n>)');
    expect(normaliseErrorMessage('at 0x7ffd5e8c, commit 9fceb02d0ae598e95dc970b74767f19372d61af8')).toBe('at <hex>, commit <hex>');
    expect(normaliseErrorMessage('expired 2024-03-01T10:15:30.123Z')).toBe('expired <time>');
    expect(normaliseErrorMessage('Date: Tue, 05 Mar 2024 10:15:30 GMT')).toBe('Date: <time>');
    expect(normaliseErrorMessage(`can't open 'x.txt'`)).toBe(`can't open <str>`);
    expect(normaliseErrorMessage('failed in C:\\Users\\ann\\app\\db.js:10:2')).toBe('failed in <path>/db.js:<n>:<n>');
    expect(normaliseErrorMessage('GET https://api.example.com/v1/users/42 failed for ann@example.com')).toBe('GET <url> failed for <email>');
    // Digits inside words are part of the name, not a number.
    expect(normaliseErrorMessage('utf8 decode failed on x86_64')).toBe('utf8 decode failed on x86_64');
  });

  it('keeps the function names of the top frames, innermost first, skipping Node internals', () => {
    expect(stackFrames(v8Stack('/app', 1), 3)).toEqual(['parseUser', 'loadProfile', 'Router.handle']);
    expect(stackFrames(v8Stack('/app', 1), 5)).toEqual(['parseUser', 'loadProfile', 'Router.handle', '<anonymous>']);
    const python = ['Traceback (most recent call last):', '  File "/srv/app/main.py", line 10, in main', '    run()', '  File "/srv/app/db.py", line 42, in connect', 'ConnectionError: refused'].join('\n');
    expect(stackFrames(python, 3)).toEqual(['connect', 'main']);
    const java = 'java.lang.NullPointerException\n\tat com.acme.Billing.charge(Billing.java:88)\n\tat com.acme.Api.handle(Api.java:12)';
    expect(stackFrames(java, 3)).toEqual(['com.acme.Billing.charge', 'com.acme.Api.handle']);
    expect(stackFrames('render@https://cdn.example.com/app.js:1:200\n@https://cdn.example.com/app.js:1:50', 3)).toEqual(['render', '<anonymous>']);
    expect(stackFrames(v8Stack('/app', 1), 0)).toEqual([]);
  });

  it('builds the text from type, message and frames, and a body hash without the type', () => {
    const sig = errorSignature({ errorType: 'TypeError', message: 'bad id 42', stack: 'TypeError: bad\n    at f (/a/b.ts:1:1)\n    at g (/a/c.ts:2:2)' }, 3);
    expect(sig.text).toBe('TypeError: bad id <n> @ f < g');
    expect(errorSignature({ message: 'bad id 7', stack: 'x\n    at f (/z/b.ts:9:9)\n    at g (/z/c.ts:8:8)' }, 3).bodyHash).toBe(sig.bodyHash);
  });
});
