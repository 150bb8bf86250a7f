import { SignJWT, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { AeternaError } from '../protocol/index.js';
import { isRole, type Role, type TenantContext } from './context.js';
import { ID_PATTERN, isValidId } from './ids.js';

const ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'ES256', 'EdDSA'];

export type TokenKeySource = { kind: 'secret'; secret: string } | { kind: 'jwks'; url: string };

export interface TokenVerifierOptions {
  keys: TokenKeySource;
  issuer?: string;
  audience?: string;
  /** Seconds of clock skew tolerated on exp/nbf. */
  clockToleranceSec?: number;
}

/** Verifies bearer tokens and turns their claims into a TenantContext. */
export class TokenVerifier {
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly options: TokenVerifierOptions;

  constructor(options: TokenVerifierOptions) {
    this.options = options;
    this.key =
      options.keys.kind === 'secret'
        ? new TextEncoder().encode(options.keys.secret)
        : createRemoteJWKSet(new URL(options.keys.url));
  }

  async verify(token: string): Promise<TenantContext> {
    return (await this.verifyWithExpiry(token)).context;
  }

  /** Also says when the token expires (ms since epoch), for connections that outlive requests. */
  async verifyWithExpiry(token: string): Promise<{ context: TenantContext; expiresAt: number | undefined }> {
    let payload: JWTPayload;
    try {
      const verifyOptions = {
        algorithms: ALGORITHMS,
        clockTolerance: this.options.clockToleranceSec ?? 5,
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience ? { audience: this.options.audience } : {}),
      };
      // jose's overloads split on the key's type; both branches verify identically.
      payload =
        this.key instanceof Uint8Array
          ? (await jwtVerify(token, this.key, verifyOptions)).payload
          : (await jwtVerify(token, this.key, verifyOptions)).payload;
    } catch (err) {
      throw new AeternaError('UNAUTHENTICATED', describeJoseError(err));
    }
    return { context: contextFromClaims(payload), expiresAt: payload.exp === undefined ? undefined : payload.exp * 1000 };
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature invalid';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `token claim invalid: ${err.claim}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'token malformed';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'token key not found';
  return 'token invalid';
}

function claimId(payload: JWTPayload, claim: string, required: boolean): string | undefined {
  const value = payload[claim];
  if (value === undefined && !required) return undefined;
  if (!isValidId(value)) {
    throw new AeternaError('UNAUTHENTICATED', `token claim ${claim} must match ${ID_PATTERN.source}`, { claim });
  }
  return value;
}

export function contextFromClaims(payload: JWTPayload): TenantContext {
  const tenantId = claimId(payload, 'tenant', true) as string;
  const userId = claimId(payload, 'sub', true) as string;
  const agentId = claimId(payload, 'agent', false);
  const sessionId = claimId(payload, 'session', false);
  const rawRoles = payload['roles'] ?? ['developer'];
  if (!Array.isArray(rawRoles) || rawRoles.length === 0 || !rawRoles.every(isRole)) {
    throw new AeternaError('UNAUTHENTICATED', 'token claim roles must be a non-empty list of viewer|developer|admin', {
      claim: 'roles',
    });
  }
  return {
    tenantId,
    userId,
    roles: rawRoles as Role[],
    ...(agentId === undefined ? {} : { agentId }),
    ...(sessionId === undefined ? {} : { sessionId }),
  };
}

export interface IssueTokenInput {
  tenantId: string;
  userId: string;
  agentId?: string;
  sessionId?: string;
  roles: readonly Role[];
  /** Lifetime, e.g. "12h"; jose's duration syntax. */
  expiresIn: string;
  issuer?: string;
  audience?: string;
}

/** Signs HS256 dev tokens: the embedded mode's stand-in for an identity provider. */
export async function issueToken(secret: string, input: IssueTokenInput): Promise<string> {
  const jwt = new SignJWT({
    tenant: input.tenantId,
    roles: [...input.roles],
    ...(input.agentId === undefined ? {} : { agent: input.agentId }),
    ...(input.sessionId === undefined ? {} : { session: input.sessionId }),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(input.userId)
    .setIssuedAt()
    .setExpirationTime(input.expiresIn);
  if (input.issuer) jwt.setIssuer(input.issuer);
  if (input.audience) jwt.setAudience(input.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}
