/**
 * A local stand-in for an OpenAI-compatible chat completions endpoint, on 127.0.0.1 and a free
 * port. Replies come from a script (one per request, in arrival order), then from a handler; a
 * request nothing answers gets HTTP 500 naming the gap, so a test that forgot a reply fails loudly.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ChatRequestBody {
  model?: unknown;
  messages?: { role: string; content: string }[];
  response_format?: unknown;
  max_tokens?: unknown;
  temperature?: unknown;
  [field: string]: unknown;
}

export interface RecordedLlmRequest {
  /** 0-based arrival order. */
  index: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body; undefined when the body was not JSON. */
  body: ChatRequestBody | undefined;
  raw: string;
}

export type LlmReply =
  /** 200 with this assistant message. */
  | string
  | {
      content: string | null;
      model?: string;
      /** null leaves usage out of the reply; default: word counts. */
      usage?: { prompt_tokens: number; completion_tokens: number } | null;
      finishReason?: string;
      delayMs?: number;
    }
  /** Any status and body, e.g. {status: 429, headers: {'retry-after': '0'}} or a malformed 200. */
  | { status: number; json?: unknown; body?: string; headers?: Record<string, string>; delayMs?: number }
  /** Never answer; the client has to give up (or the server closes). */
  | { hang: true };

export type LlmHandler = (req: RecordedLlmRequest) => LlmReply | Promise<LlmReply>;

export interface LlmServer {
  /** What a user would configure: `http://127.0.0.1:PORT/v1`. */
  readonly url: string;
  readonly origin: string;
  readonly requests: readonly RecordedLlmRequest[];
  /** Replies for the next requests, in arrival order; they take precedence over the handler. */
  enqueue(...replies: LlmReply[]): void;
  setHandler(handler: LlmHandler | undefined): void;
  /**
   * Holds every request that arrives from now on (recorded, unanswered) until the returned
   * function is called; then they are answered as usual.
   */
  hold(): () => void;
  /** Resolves once `count` requests in all have arrived. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface StartLlmServerOptions {
  replies?: LlmReply[];
  handler?: LlmHandler;
}

function words(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** A chat.completion object as OpenAI returns it. */
export function chatCompletion(
  content: string | null,
  opts: { model?: string; usage?: { prompt_tokens: number; completion_tokens: number } | null; finishReason?: string } = {},
): Record<string, unknown> {
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: opts.model ?? 'test-model',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: opts.finishReason ?? 'stop' }],
    ...(opts.usage === null
      ? {}
      : { usage: { ...(opts.usage ?? { prompt_tokens: 0, completion_tokens: words(content ?? '') }), total_tokens: 0 } }),
  };
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
}

export async function startLlmServer(opts: StartLlmServerOptions = {}): Promise<LlmServer> {
  const requests: RecordedLlmRequest[] = [];
  const script: LlmReply[] = [...(opts.replies ?? [])];
  let handler = opts.handler;
  let gate: Promise<void> | undefined;
  const waiters: { count: number; resolve: () => void }[] = [];

  async function answer(req: RecordedLlmRequest, scripted: LlmReply | undefined, res: http.ServerResponse): Promise<void> {
    if (gate) await gate;
    if (!req.path.endsWith('/chat/completions') || req.method !== 'POST') {
      return send(res, 404, JSON.stringify({ error: { message: `no route ${req.method} ${req.path}` } }));
    }
    const reply = scripted ?? (handler ? await handler(req) : undefined);
    if (reply === undefined) {
      return send(res, 500, JSON.stringify({ error: { message: `llm test server: no reply scripted for request ${req.index}` } }));
    }
    if (typeof reply === 'string') return send(res, 200, JSON.stringify(chatCompletion(reply, { model: String(req.body?.model ?? 'test-model') })));
    if ('hang' in reply) return;
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    if ('status' in reply) {
      return send(res, reply.status, reply.body ?? (reply.json === undefined ? '' : JSON.stringify(reply.json)), reply.headers);
    }
    const model = reply.model ?? String(req.body?.model ?? 'test-model');
    send(res, 200, JSON.stringify(chatCompletion(reply.content, { ...reply, model })));
  }

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      let body: ChatRequestBody | undefined;
      try {
        body = JSON.parse(raw) as ChatRequestBody;
      } catch {
        body = undefined;
      }
      const recorded: RecordedLlmRequest = { index: requests.length, method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, raw };
      requests.push(recorded);
      const scripted = script.shift();
      for (const w of waiters.filter((x) => requests.length >= x.count)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      answer(recorded, scripted, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, JSON.stringify({ error: { message: String(err) } }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;

  return {
    url: `${origin}/v1`,
    origin,
    requests,
    enqueue: (...replies) => void script.push(...replies),
    setHandler: (h) => void (handler = h),
    hold() {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      gate = held;
      return () => {
        if (gate === held) gate = undefined;
        release();
      };
    },
    waitForRequests(count, timeoutMs = 10_000) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`llm test server: ${requests.length} of ${count} requests after ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
