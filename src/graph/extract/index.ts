// Graph extraction's public face, re-exported by src/graph/index.ts.
import type { Llm } from '../../cca/index.js';
import type { GraphConfig } from '../../config.js';
import { AeternaError } from '../../protocol/index.js';
import { LlmExtractor } from './llm.js';
import { RuleExtractor } from './rules.js';
import type { Extractor } from './types.js';

export type { EntityRef, ExtractedEntity, ExtractedRelation, Extraction, ExtractionLimits, Extractor } from './types.js';
export { CO_OCCURRENCE, CO_OCCURRENCE_WEIGHT, DEFAULT_EXTRACTION_LIMITS, RELATION_WEIGHT } from './types.js';
export { RuleExtractor, extractByRules } from './rules.js';
export { LlmExtractor, parseLlmExtraction, type LlmExtractorOptions } from './llm.js';
export { extractionToOps, invalidateOps, supersededEdges, type Superseded, type SupportedEdge } from './ops.js';

/**
 * The extractor the configuration asks for. Config already refuses `llm` without an LLM URL, so a
 * missing `llm` here is a wiring bug and fails loudly rather than silently extracting by rules.
 */
export function createExtractor(config: Pick<GraphConfig, 'extractor'>, llm?: Llm): Extractor {
  if (config.extractor === 'rules') return new RuleExtractor();
  if (!llm) throw new AeternaError('INTERNAL', "graph extractor 'llm' is configured but no LLM was given");
  return new LlmExtractor(llm);
}
