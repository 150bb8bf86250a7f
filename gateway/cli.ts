import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { ROLES, assertId, isRole, issueToken, resolveTokenKeys, type Role } from '../src/tenancy/index.js';

const USAGE = `usage:
  aeterna start                       start the gateway (embedded mode unless AETERNA_DATABASE_URL is set)
  aeterna token --tenant T --user U [--agent A] [--session S] [--roles r1,r2] [--expires 12h]
                                      print a signed dev JWT (roles: ${ROLES.join(', ')}; default developer)`;

class UsageError extends Error {}

async function tokenCommand(config: Config, argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      tenant: { type: 'string' },
      user: { type: 'string' },
      agent: { type: 'string' },
      session: { type: 'string' },
      roles: { type: 'string', default: 'developer' },
      expires: { type: 'string', default: '12h' },
    },
    strict: true,
  });
  if (!values.tenant || !values.user) throw new UsageError('--tenant and --user are required');
  const roles = values.roles.split(',').map((r) => r.trim());
  if (!roles.every(isRole)) throw new UsageError(`--roles must be a comma-separated list of ${ROLES.join(', ')}`);
  if (!/^\d+\s*[smhdw]$/.test(values.expires)) throw new UsageError('--expires must look like 30m, 12h or 7d');
  const { signingSecret } = await resolveTokenKeys(config.auth, config.dataDir);
  if (!signingSecret) throw new UsageError('tokens are verified against AETERNA_JWKS_URL: issue them from that identity provider');
  const token = await issueToken(signingSecret, {
    tenantId: assertId('--tenant', values.tenant),
    userId: assertId('--user', values.user),
    ...(values.agent ? { agentId: assertId('--agent', values.agent) } : {}),
    ...(values.session ? { sessionId: assertId('--session', values.session) } : {}),
    roles: roles as Role[],
    expiresIn: values.expires,
    ...(config.auth.issuer ? { issuer: config.auth.issuer } : {}),
    ...(config.auth.audience ? { audience: config.auth.audience } : {}),
  });
  process.stdout.write(`${token}\n`);
}

async function startCommand(config: Config): Promise<void> {
  // Loaded here, not at the top: `aeterna token` should not pay for PGlite, uWS and socket.io.
  const [{ openCore }, { createLogger }, { createGateway }, { createProcessors }] = await Promise.all([
    import('../src/core.js'),
    import('../src/obs/index.js'),
    import('./app.js'),
    import('../workers/processors/index.js'),
  ]);
  const log = createLogger(config.logLevel);
  const core = await openCore(config, log);
  // Embedded mode has no worker processes: this process runs the jobs itself.
  const gateway = createGateway(core, log, config.redisUrl ? {} : { processors: createProcessors({ core, log }) });
  const port = await gateway.listen(config.host, config.port);
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  process.stdout.write(
    `\nAeterna (${config.mode} mode) listening on ${url}\n` +
      `  data:   ${config.mode === 'embedded' ? config.dataDir : 'PostgreSQL'}\n` +
      `  token:  npx aeterna token --tenant acme --user alice --roles developer\n` +
      `  try:    curl -H "authorization: Bearer $TOKEN" ${url}/v1/memories\n\n`,
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    // Whatever happens below, be gone within 10 s.
    setTimeout(() => process.exit(1), 10_000).unref();
    await gateway.close(5000);
    await core.close();
    process.exit(0);
  };
  // A bug that leaks a rejected promise is logged, not allowed to take every connection down.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    const config = loadConfig();
    if (command === 'start') await startCommand(config);
    else if (command === 'token') await tokenCommand(config, rest);
    else throw new UsageError(command ? `unknown command ${command}` : 'no command given');
    return 0;
  } catch (err) {
    if (err instanceof UsageError) process.stderr.write(`aeterna: ${err.message}\n${USAGE}\n`);
    else if (err instanceof ConfigError) process.stderr.write(`aeterna: ${err.message}\n`);
    else process.stderr.write(`aeterna: ${(err as Error).message}\n`);
    return 2;
  }
}
