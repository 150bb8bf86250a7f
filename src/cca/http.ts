import { AeternaError } from '../protocol/index.js';

/**
 * A JSON POST to a model provider with a per-try timeout, bounded retries and errors that never
 * carry the URL or key (their details may travel to clients). Written provider-neutral so the
 * embedding client can share it.
 */

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** First retry waits about this long; each further one twice as long. */
  baseDelayMs: number;
  /** No wait is longer, not even one a provider asks for in Retry-After. */
  maxDelayMs: number;
}

export interface PostJsonOptions {
  /** How errors name the provider, e.g. "LLM (model gpt-4o-mini)". */
  provider: string;
  apiKey?: string | undefined;
  /** Per try; covers reading the body too. A try that times out is not repeated. */
  timeoutMs: number;
  retry: RetryPolicy;
  /** The caller's cancellation (a job shutting down); also interrupts a backoff wait. */
  signal?: AbortSignal | undefined;
  fetch: typeof fetch;
  /** Added to every error's details, e.g. {model}. */
  details?: Record<string, unknown>;
}

const PROVIDER_MESSAGE_CHARS = 300;

/**
 * 408/425/429 and 5xx are a busy or restarting provider; any other status is an answer about the
 * request itself (bad key, unknown model, prompt too long) that another try will not change.
 */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/**
 * undici reports network failures as "fetch failed" with the reason in `cause`; its code
 * (ECONNREFUSED, ENOTFOUND, …) says what happened without the host and port its message carries.
 */
export function networkErrorCode(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined;
  return code ?? (cause instanceof Error ? cause.name : 'unknown error');
}

/** Retry-After in seconds or as an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Exponential with jitter, so clients that failed together do not retry together. */
function backoffMs(policy: RetryPolicy, failedTries: number): number {
  const full = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (failedTries - 1));
  return full / 2 + (Math.random() * full) / 2;
}

/** Waits `ms`; an abort ends the wait early by rejecting with the signal's reason. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

type TryResult = { ok: true; body: unknown } | { ok: false; error: AeternaError; waitMs?: number | undefined };

/**
 * POSTs `body` and returns the parsed JSON reply. Throws UNAVAILABLE when the provider cannot be
 * reached, times out, is cancelled or answers an error status (after the retries the policy
 * allows), and INTERNAL when it answers 2xx with something that is not JSON.
 */
export async function postJson(endpoint: string, body: unknown, opts: PostJsonOptions): Promise<unknown> {
  const attempts = Math.max(1, opts.retry.attempts);
  const payload = JSON.stringify(body);
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw cancelled(opts);
    const result = await tryOnce(endpoint, payload, opts);
    if (result.ok) return result.body;
    if (result.error.details?.retryable !== true || attempt >= attempts) {
      const { error } = result;
      throw attempt === 1 ? error : new AeternaError(error.code, `${error.message} (${attempt} tries)`, { ...error.details, attempts: attempt });
    }
    try {
      await sleep(Math.min(opts.retry.maxDelayMs, result.waitMs ?? backoffMs(opts.retry, attempt)), opts.signal);
    } catch {
      throw cancelled(opts);
    }
  }
}

async function tryOnce(endpoint: string, payload: string, opts: PostJsonOptions): Promise<TryResult> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout.signal, opts.signal]) : timeout.signal;
  try {
    const res = await opts.fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
      },
      body: payload,
      signal,
    });
    const text = await res.text();
    if (!res.ok) {
      const retryable = isRetryableStatus(res.status);
      return {
        ok: false,
        error: fail(opts, 'UNAVAILABLE', `returned HTTP ${res.status}`, {
          status: res.status,
          retryable,
          providerMessage: text.slice(0, PROVIDER_MESSAGE_CHARS),
        }),
        waitMs: retryable ? retryAfterMs(res.headers.get('retry-after')) : undefined,
      };
    }
    try {
      return { ok: true, body: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, error: fail(opts, 'INTERNAL', 'returned a body that is not JSON', { retryable: false, sample: text.slice(0, 80) }) };
    }
  } catch (err) {
    if (opts.signal?.aborted) return { ok: false, error: cancelled(opts) };
    if (timeout.signal.aborted) {
      return { ok: false, error: fail(opts, 'UNAVAILABLE', `did not answer within ${opts.timeoutMs} ms`, { timeoutMs: opts.timeoutMs, retryable: false }) };
    }
    return { ok: false, error: fail(opts, 'UNAVAILABLE', `could not be reached (${networkErrorCode(err)})`, { retryable: true }) };
  } finally {
    clearTimeout(timer);
  }
}

function cancelled(opts: PostJsonOptions): AeternaError {
  return fail(opts, 'UNAVAILABLE', 'request was cancelled', { cancelled: true, retryable: false });
}

function fail(opts: PostJsonOptions, code: 'UNAVAILABLE' | 'INTERNAL', problem: string, details: Record<string, unknown>): AeternaError {
  return new AeternaError(code, `${opts.provider} ${problem}`, { ...opts.details, ...details });
}
