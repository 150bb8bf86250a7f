import { destination, pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/**
 * JSON lines on stdout; `silent` for tests. Synchronous writes keep log lines in order with the
 * start-up banner and are not lost on exit; nothing logs per request, so the cost is start-up only.
 * One logger per process, passed down, never global.
 */
export function createLogger(level: string, name = 'aeterna'): Logger {
  return pino({ name, level }, destination({ dest: 1, sync: true }));
}
