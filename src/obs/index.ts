import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** JSON lines on stdout; `silent` for tests. One logger per process, passed down, never global. */
export function createLogger(level: string, name = 'aeterna'): Logger {
  return pino({ name, level });
}
