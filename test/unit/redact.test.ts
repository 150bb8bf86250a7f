import { describe, expect, it } from 'vitest';
import { capUtf8, redactText, sanitiseForStorage, type RedactionKind } from '../../src/cca/index.js';

// Fake credentials of the right shapes, assembled at run time so no scanner mistakes this file for a leak.
const openAiKey = 'sk-' + 'proj-' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4';
const awsKeyId = 'AKIA' + 'IOSFODNN7EXAMPLE';
const githubToken = 'ghp_' + '1234567890abcdefghijABCDEFGHIJ123456';
const slackToken = 'xoxb-' + '123456789012-1234567890123-AbCdEfGhIjKlMnOp';
const jwt =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9' + '.' + 'eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ' + '.' + 'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
const opaque = 'd9F3kq81ZxP0vB7mL2nR5tY4';
const privateKey = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEA7Jx1c2VyOnBhc3N3b3Jk', 'bm90IGEgcmVhbCBrZXk=', '-----END RSA PRIVATE KEY-----'].join('\n');

/** [what it is, input, the kind redacted, a fragment that must not survive] */
const SECRETS: [string, string, RedactionKind, string][] = [
  ['OpenAI-style key in prose', `use key ${openAiKey} for the call`, 'api_key', openAiKey],
  ['AWS access key id', `aws configure set aws_access_key_id ${awsKeyId}`, 'api_key', awsKeyId],
  ['GitHub token', `git clone https://github.com/acme/app.git --token=${githubToken}`, 'api_key', githubToken],
  ['Slack token', `SLACK=${slackToken}`, 'api_key', slackToken],
  ['JWT', `token was ${jwt} yesterday`, 'jwt', 'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'],
  ['Bearer header', `curl -H "Authorization: Bearer ${opaque}" https://api.example.com`, 'bearer', opaque],
  ['Basic auth header', 'Authorization: Basic dXNlcjpodW50ZXIy', 'bearer', 'dXNlcjpodW50ZXIy'],
  ['bare bearer credential', `sent Bearer ${opaque} upstream`, 'bearer', opaque],
  ['password in a URL', 'postgres://app:hunter2@db.internal:5432/prod', 'url_password', 'hunter2'],
  ['password= pair', 'login?user=ann&password=hunter2&next=/', 'password', 'hunter2'],
  ['JSON password pair', '{"user":"ann","password":"correct horse battery"}', 'password', 'correct horse battery'],
  ['env password', 'DB_PASSWORD=s3cr3t!', 'password', 's3cr3t!'],
  ['password inside a serialised JSON string', JSON.stringify(JSON.stringify({ password: 'p@ss w0rd' })), 'password', 'p@ss w0rd'],
  ['secret label with a random value', `AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`, 'secret', 'wJalrXUtnFEMI/K7MDENG'],
  ['api key label in JSON', `{"apiKey": "${opaque}"}`, 'secret', opaque],
  ['token label', `GITLAB_TOKEN: ${opaque}`, 'secret', opaque],
  ['private key block', `key file:\n${privateKey}\nend`, 'private_key', 'MIIEowIBAAKCAQEA'],
  ['private key block cut off by a cap', privateKey.slice(0, 60), 'private_key', 'MIIEow'],
];

describe('redactText', () => {
  it.each(SECRETS)('redacts %s', (_what, input, kind, secret) => {
    const out = redactText(input);
    expect(out.text).not.toContain(secret);
    expect(out.text).toContain(`[REDACTED:${kind}]`);
    expect(out.counts[kind]).toBeGreaterThanOrEqual(1);
    expect(out.total).toBeGreaterThanOrEqual(1);
  });

  it('keeps what is around a secret', () => {
    expect(redactText('login?user=ann&password=hunter2&next=/').text).toBe('login?user=ann&password=[REDACTED:password]&next=/');
    expect(redactText('postgres://app:hunter2@db.internal:5432/prod').text).toBe('postgres://app:[REDACTED:url_password]@db.internal:5432/prod');
    expect(JSON.parse(redactText('{"user":"ann","password":"x y"}').text)).toEqual({ user: 'ann', password: '[REDACTED:password]' });
  });

  const PLAIN = [
    'the key to success is patience',
    'a token of appreciation was given to the team',
    'Enter the password in the dialog',
    'request f47ac10b-58cc-4372-a567-0e02b2c3d479 failed at commit 9fceb02d0ae598e95dc970b74767f19372d61af8',
    'sort_key=created_at&order=desc',
    '{"primary_key": "user_id", "max_tokens": 512, "prompt_tokens": 10}',
    'https://example.com/docs/auth?page=2',
    'PWD=/home/ann/project OLDPWD=/home/ann',
    'the bearer of bad news arrived',
    'sklearn and sk-learn are the same package',
    '{"password": null, "token": ""}',
  ];
  it.each(PLAIN)('leaves ordinary text alone: %s', (text) => {
    const out = redactText(text);
    expect(out.text).toBe(text);
    expect(out.total).toBe(0);
  });

  it('never redacts a marker twice', () => {
    const once = redactText(`OPENAI_API_KEY=${openAiKey} password=hunter2`);
    const twice = redactText(once.text);
    expect(twice.text).toBe(once.text);
    expect(twice.total).toBe(0);
  });

  it('stays linear on hostile input of the maximum size', () => {
    const hostile = 'password='.repeat(20_000) + 'a'.repeat(200_000) + '-----BEGIN PRIVATE KEY-----' + 'x'.repeat(100_000);
    const out = redactText(hostile);
    expect(out.text).toContain('[REDACTED:private_key]');
  });
});

describe('caps', () => {
  it('cuts at a byte limit on a character boundary and says so', () => {
    const capped = capUtf8('é'.repeat(100), 64);
    expect(capped.truncated).toBe(true);
    expect(capped.bytes).toBe(200);
    expect(Buffer.byteLength(capped.text)).toBeLessThanOrEqual(64);
    expect(capped.text).toMatch(/^é+…\[truncated 200 bytes\]$/);
    expect(capUtf8('short', 64)).toEqual({ text: 'short', truncated: false, bytes: 5 });
  });

  it('stores JSON inputs redacted, then capped, NUL-free', () => {
    const stored = sanitiseForStorage({ cmd: 'deploy', password: 'hunter2', blob: 'z'.repeat(10_000) }, 256);
    expect(stored.truncated).toBe(true);
    expect(stored.redactions).toBe(1);
    expect(stored.text).toContain('"password":"[REDACTED:password]"');
    expect(Buffer.byteLength(stored.text ?? '')).toBeLessThanOrEqual(256);
    expect(sanitiseForStorage('a\u0000b', 256).text).toBe('a\uFFFDb');
    expect(sanitiseForStorage(undefined, 256)).toEqual({ text: null, truncated: false, redactions: 0 });
  });

  it('redacts before capping, so a cap never keeps half a secret', () => {
    // Capping first would keep "sk-proj-A1b2C3d…", too short for the key pattern to recognise.
    const stored = sanitiseForStorage(`${'x'.repeat(30)} ${openAiKey} and more text after the key`, 70);
    expect(stored.text).not.toContain('sk-proj');
  });
});
