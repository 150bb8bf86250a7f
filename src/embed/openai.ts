import { z } from 'zod';
import { AeternaError } from '../protocol/index.js';
import type { Embedder } from './types.js';
import { normalizeInPlace } from './vectors.js';

export interface OpenAIEmbedderOptions {
  /** Base URL including the version segment, e.g. https://api.openai.com/v1 or http://localhost:11434/v1. */
  url: string;
  model: string;
  apiKey?: string;
  /** What the model returns; checked on every response rather than requested (see below). */
  dims: number;
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** Below every provider's per-request input limit (OpenAI 2048, TEI's default 32 is raised by config). */
const BATCH_SIZE = 128;
const PROVIDER_MESSAGE_CHARS = 300;

/**
 * undici reports network failures as "fetch failed" with the reason in `cause`; its code
 * (ECONNREFUSED, ENOTFOUND, …) says what happened without the host and port its message carries.
 */
function networkErrorCode(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined;
  return code ?? (cause instanceof Error ? cause.name : 'unknown error');
}

const responseSchema = z.object({
  data: z.array(z.object({ embedding: z.array(z.number()), index: z.number().int().nonnegative() })),
  usage: z.unknown().optional(),
});

/**
 * Any OpenAI-compatible embeddings endpoint: OpenAI, Ollama (/v1), vLLM, TEI, LiteLLM.
 *
 * `dimensions` is never sent: only OpenAI's text-embedding-3 family and a few matryoshka models
 * accept it, and ada-002, vLLM and others answer 400 when it is present. The configured `dims`
 * is checked against every returned vector instead, so a model/config mismatch fails loudly.
 *
 * Every failure surfaces as UNAVAILABLE and nothing partial is returned: a caller storing
 * memories must not end up with some rows embedded and some not.
 */
export class OpenAIEmbedder implements Embedder {
  readonly model: string;
  readonly dims: number;
  private readonly endpoint: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(opts: OpenAIEmbedderOptions) {
    const base = opts.url.replace(/\/+$/, '');
    if (!URL.canParse(base) || !/^https?:$/.test(new URL(base).protocol)) {
      throw new AeternaError('INVALID_ARGUMENT', 'embedding url must be an http(s) URL');
    }
    if (!Number.isInteger(opts.dims) || opts.dims < 1) {
      throw new AeternaError('INVALID_ARGUMENT', `embedding dims must be a positive integer, got ${opts.dims}`);
    }
    if (!(opts.timeoutMs > 0)) throw new AeternaError('INVALID_ARGUMENT', 'embedding timeoutMs must be positive');
    this.endpoint = `${base}/embeddings`;
    this.model = opts.model;
    this.dims = opts.dims;
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs;
    this.fetchFn = opts.fetch ?? globalThis.fetch;
  }

  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    // Sequential on purpose: providers rate-limit per key, and parallel batches mostly buy 429s.
    for (let start = 0; start < texts.length; start += BATCH_SIZE) {
      out.push(...(await this.embedBatch(texts.slice(start, start + BATCH_SIZE))));
    }
    return out;
  }

  private async embedBatch(input: readonly string[]): Promise<Float32Array[]> {
    const body = await this.post(input);
    const parsed = responseSchema.safeParse(body);
    if (!parsed.success) {
      throw this.unavailable('malformed response: expected {data: [{embedding: number[], index}]}', {
        issue: parsed.error.issues[0]?.message,
      });
    }
    const { data } = parsed.data;
    if (data.length !== input.length) {
      throw this.unavailable(`returned ${data.length} vectors for ${input.length} inputs`, {
        expected: input.length,
        received: data.length,
      });
    }
    const ordered = new Array<Float32Array | undefined>(input.length);
    for (const item of data) {
      if (item.index >= input.length || ordered[item.index] !== undefined) {
        throw this.unavailable(`returned a missing or duplicate index ${item.index}`, { index: item.index });
      }
      if (item.embedding.length !== this.dims) {
        throw this.unavailable(
          `returned ${item.embedding.length}-dimensional vectors but ${this.dims} are configured (AETERNA_EMBED_DIMS)`,
          { expected: this.dims, received: item.embedding.length },
        );
      }
      const vector = Float32Array.from(item.embedding);
      if (!normalizeInPlace(vector)) throw this.unavailable('returned a zero or non-finite vector', { index: item.index });
      ordered[item.index] = vector;
    }
    // Count and uniqueness were checked above, so every slot is filled.
    return ordered as Float32Array[];
  }

  /** POSTs one batch and returns the parsed JSON; the timeout covers reading the body too. */
  private async post(input: readonly string[]): Promise<unknown> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const res = await this.fetchFn(this.endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
        },
        body: JSON.stringify({ model: this.model, input }),
        signal: controller.signal,
      });
      const text = await res.text();
      if (!res.ok) {
        throw this.unavailable(`returned HTTP ${res.status}`, {
          status: res.status,
          providerMessage: text.slice(0, PROVIDER_MESSAGE_CHARS),
        });
      }
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw this.unavailable('returned a body that is not JSON', { sample: text.slice(0, 80) });
      }
    } catch (err) {
      if (err instanceof AeternaError) throw err;
      if (controller.signal.aborted) {
        throw this.unavailable(`did not answer within ${this.timeoutMs} ms`, { timeoutMs: this.timeoutMs });
      }
      throw this.unavailable(`could not be reached (${networkErrorCode(err)})`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Errors name the model but not the URL or key: their details may travel to clients on the
   * wire, and the endpoint is operator configuration.
   */
  private unavailable(problem: string, details: Record<string, unknown> = {}): AeternaError {
    return new AeternaError('UNAVAILABLE', `embedding provider (model ${this.model}) ${problem}`, { model: this.model, ...details });
  }
}
