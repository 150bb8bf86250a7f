export { createLogger, type Logger } from './logger.js';
export { countTokens, truncateToTokens } from './tokens.js';
