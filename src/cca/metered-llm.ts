import { countTokens, type TokenMeter } from '../obs/index.js';
import { assertId } from '../tenancy/index.js';
import type { Llm, LlmMessage, LlmRequest, LlmResponse } from './llm.js';

/**
 * Chat framing around each message (role, separators) and the reply's priming, as OpenAI counts
 * them for its chat models. The provider's reported usage replaces this estimate once it answers.
 */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_REPLY = 3;

export function promptTokens(messages: readonly LlmMessage[]): number {
  return messages.reduce((sum, m) => sum + TOKENS_PER_MESSAGE + countTokens(m.content), TOKENS_PER_REPLY);
}

/**
 * Any Llm, charged to a tenant's LLM token budget. The prompt (counted here) is reserved before
 * the call, so a tenant over its limit is refused (RATE_LIMITED) without reaching the model; the
 * reservation is then settled to prompt + completion as the provider reports them (each counted
 * here when the provider reports 0), or refunded when the call fails. The completion cannot be
 * known beforehand, so one call may end past the limit by at most its completion; the next
 * call is refused.
 */
export class MeteredLlm {
  readonly model: string;

  constructor(
    private readonly llm: Llm,
    private readonly meter: TokenMeter,
  ) {
    this.model = llm.model;
  }

  async complete(tenantId: string, req: LlmRequest): Promise<LlmResponse> {
    const estimate = promptTokens(req.messages);
    const charge = await this.meter.reserve(tenantId, 'llm', estimate);
    let res: LlmResponse;
    try {
      res = await this.llm.complete(req);
    } catch (err) {
      await this.meter.refund(charge);
      throw err;
    }
    const prompt = res.usage.promptTokens > 0 ? res.usage.promptTokens : estimate;
    const completion = res.usage.completionTokens > 0 ? res.usage.completionTokens : countTokens(res.text);
    await this.meter.settle(charge, prompt + completion);
    return res;
  }

  /**
   * An ordinary `Llm` that charges one tenant: what a job processor hands to code written against
   * `Llm` (the graph's LLM extractor, summarisers), built per job from `job.tenantId`.
   */
  forTenant(tenantId: string): Llm {
    assertId('tenantId', tenantId);
    return { model: this.model, complete: (req) => this.complete(tenantId, req) };
  }
}
