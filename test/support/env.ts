/**
 * How a test file learns which real servers it may use. `npm test` (test/run.ts) starts
 * throwaway servers and passes their URLs in these variables; a bare `npx vitest` has none,
 * and then server-backed suites skip locally but fail in CI, where skipping would hide them.
 */
export const REDIS_URL_VAR = 'AETERNA_TEST_REDIS_URL';
export const DATABASE_URL_VAR = 'AETERNA_TEST_DATABASE_URL';
export const REQUIRE_SERVICES_VAR = 'AETERNA_TEST_REQUIRE_SERVICES';
/** The Python interpreter that can import socketio (a real non-JavaScript client). */
export const PYTHON_VAR = 'AETERNA_TEST_PYTHON';

export type ServiceName = 'redis' | 'postgres' | 'python';

const SERVICES: Record<ServiceName, { variable: string; label: string }> = {
  redis: { variable: REDIS_URL_VAR, label: 'Redis' },
  postgres: { variable: DATABASE_URL_VAR, label: 'PostgreSQL' },
  python: { variable: PYTHON_VAR, label: 'python3-socketio client' },
};

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

export function testRedisUrl(): string | undefined {
  return nonEmpty(process.env[REDIS_URL_VAR]);
}

export function testDatabaseUrl(): string | undefined {
  return nonEmpty(process.env[DATABASE_URL_VAR]);
}

export function servicesRequired(): boolean {
  const value = process.env[REQUIRE_SERVICES_VAR]?.trim().toLowerCase();
  return value === '1' || value === 'true' || value === 'yes';
}

const warned = new Set<ServiceName>();

/**
 * The URL of a test server, or undefined when the suite should skip:
 * `const pgUrl = requireService('postgres'); describe.skipIf(!pgUrl)(…)`.
 * Throws instead when services are required, so CI cannot pass by skipping.
 */
export function requireService(name: ServiceName): string | undefined {
  const { variable, label } = SERVICES[name];
  const url = nonEmpty(process.env[variable]);
  if (url) return url;
  if (servicesRequired()) {
    throw new Error(`${label} is required (${REQUIRE_SERVICES_VAR} is set) but ${variable} is empty; test/run.ts could not start it — see its banner above.`);
  }
  if (!warned.has(name)) {
    warned.add(name);
    console.warn(
      `[aeterna tests] ${variable} is not set, so tests that need a real ${label} are SKIPPED. ` +
        `"npm test" starts a throwaway ${label}; if it printed a "!!!" banner, that start failed and says why.`,
    );
  }
  return undefined;
}
