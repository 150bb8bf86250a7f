// The CCA module's public face: other folders import only from here.
export { OpenAiChatLlm, createLlm, chatCompletionsUrl, DEFAULT_LLM_RETRY } from './llm.js';
export type { Llm, LlmMessage, LlmRequest, LlmResponse, LlmRole, LlmUsage, OpenAiChatLlmOptions } from './llm.js';
export { postJson, networkErrorCode } from './http.js';
export type { PostJsonOptions, RetryPolicy } from './http.js';
