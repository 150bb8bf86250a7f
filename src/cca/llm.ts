import { z } from 'zod';
import type { LlmConfig } from '../config.js';
import { AeternaError, parseInput } from '../protocol/index.js';
import { postJson, type RetryPolicy } from './http.js';

export type LlmRole = 'system' | 'user' | 'assistant';

export interface LlmMessage {
  role: LlmRole;
  content: string;
}

export interface LlmRequest {
  messages: LlmMessage[];
  maxTokens?: number;
  temperature?: number;
  /**
   * Ask for a JSON object (`response_format: json_object`). OpenAI refuses it unless a message
   * mentions JSON, so say so in the prompt. The text still has to be parsed and validated.
   */
  json?: boolean;
  signal?: AbortSignal;
}

export interface LlmUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface LlmResponse {
  text: string;
  /** As the provider reports it; zeros when it reports none (some local servers). */
  usage: LlmUsage;
  /** The model that answered (the provider's name for it when given, else the configured one). */
  model: string;
  /** 'length' means the reply was cut at maxTokens: JSON in it is likely truncated. */
  finishReason?: string;
}

/**
 * The one way Aeterna talks to a language model (graph extraction, summaries, notes, the
 * meta-agent). Failures are AeternaErrors: UNAVAILABLE when the model could not answer (network,
 * timeout, error status, cancelled), INTERNAL when it answered something unreadable; the
 * details say `retryable` and, for HTTP errors, `status`.
 */
export interface Llm {
  readonly model: string;
  complete(req: LlmRequest): Promise<LlmResponse>;
}

export interface OpenAiChatLlmOptions extends LlmConfig {
  fetch?: typeof fetch;
  retry?: Partial<RetryPolicy>;
}

/** A 429 or 5xx is tried 3 times in all, over at most a few seconds: the job queue retries longer. */
export const DEFAULT_LLM_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 500, maxDelayMs: 8_000 };

/**
 * `{url}/chat/completions`, where a URL whose path already names an API version (`/v1`,
 * `/v1beta/openai`, `/api/v1`) is taken as the base and one without (`http://localhost:11434`)
 * gets `/v1`. A URL that already ends in `/chat/completions` is used as given. The query string
 * is kept (Azure-style `api-version`).
 */
export function chatCompletionsUrl(url: string): string {
  if (!URL.canParse(url)) throw new AeternaError('INVALID_ARGUMENT', 'LLM url must be an http(s) URL');
  const parsed = new URL(url);
  if (!/^https?:$/.test(parsed.protocol)) throw new AeternaError('INVALID_ARGUMENT', 'LLM url must be an http(s) URL');
  const path = parsed.pathname.replace(/\/+$/, '');
  if (!/\/chat\/completions$/.test(path)) {
    parsed.pathname = /\/v\d+[a-z0-9]*(\/|$)/i.test(path) ? `${path}/chat/completions` : `${path}/v1/chat/completions`;
  }
  return parsed.toString();
}

const requestSchema = z.object({
  messages: z
    .array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict())
    .min(1, 'at least one message is required'),
  maxTokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
  json: z.boolean().optional(),
});

const tokenCount = z.number().int().nonnegative().catch(0);

/** Only what is read; providers add fields freely. */
const responseSchema = z.object({
  model: z.string().min(1).optional().catch(undefined),
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string() }),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: z.object({ prompt_tokens: tokenCount.default(0), completion_tokens: tokenCount.default(0) }).nullish().catch(undefined),
});

/** Any OpenAI-compatible chat completions endpoint: OpenAI, Ollama, vLLM, llama.cpp, LiteLLM. */
/**
 * The JSON object in a model's reply, also when the model wraps it in a code fence or a sentence.
 * Throws SyntaxError when there is none; callers turn that into their own retryable error.
 */
export function jsonObjectIn(text: string): unknown {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start) throw new SyntaxError('no JSON object');
  return JSON.parse(text.slice(start, end + 1)) as unknown;
}

export class OpenAiChatLlm implements Llm {
  readonly model: string;
  private readonly endpoint: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly retry: RetryPolicy;
  private readonly fetchFn: typeof fetch;

  constructor(opts: OpenAiChatLlmOptions) {
    if (!(opts.timeoutMs > 0)) throw new AeternaError('INVALID_ARGUMENT', 'LLM timeoutMs must be positive');
    if (opts.model.trim() === '') throw new AeternaError('INVALID_ARGUMENT', 'LLM model must not be empty');
    this.endpoint = chatCompletionsUrl(opts.url);
    this.model = opts.model;
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs;
    this.retry = { ...DEFAULT_LLM_RETRY, ...opts.retry };
    this.fetchFn = opts.fetch ?? globalThis.fetch;
  }

  async complete(req: LlmRequest): Promise<LlmResponse> {
    const { signal, ...rest } = req;
    const input = parseInput(requestSchema, rest, 'LLM request');
    const raw = await postJson(
      this.endpoint,
      {
        model: this.model,
        messages: input.messages,
        ...(input.maxTokens !== undefined ? { max_tokens: input.maxTokens } : {}),
        ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
        ...(input.json ? { response_format: { type: 'json_object' } } : {}),
      },
      {
        provider: `LLM (model ${this.model})`,
        apiKey: this.apiKey,
        timeoutMs: this.timeoutMs,
        retry: this.retry,
        signal,
        fetch: this.fetchFn,
        details: { model: this.model },
      },
    );
    const parsed = responseSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AeternaError('INTERNAL', `LLM (model ${this.model}) returned a malformed response: expected {choices: [{message: {content: string}}]}`, {
        model: this.model,
        retryable: false,
        issue: issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : undefined,
      });
    }
    const { choices, usage, model } = parsed.data;
    // min(1) above guarantees the first choice.
    const first = choices[0]!;
    return {
      text: first.message.content,
      usage: { promptTokens: usage?.prompt_tokens ?? 0, completionTokens: usage?.completion_tokens ?? 0 },
      model: model ?? this.model,
      ...(first.finish_reason ? { finishReason: first.finish_reason } : {}),
    };
  }
}

/** The configured model, or undefined when none is (callers then work offline or refuse). */
export function createLlm(config?: LlmConfig): Llm | undefined {
  return config ? new OpenAiChatLlm(config) : undefined;
}
