export { ID_PATTERN, assertId, isValidId } from './ids.js';
export {
  PERMISSIONS,
  ROLES,
  actorOf,
  hasPermission,
  isRole,
  requirePermission,
  type Permission,
  type Role,
  type TenantContext,
} from './context.js';
export {
  TokenVerifier,
  contextFromClaims,
  issueToken,
  type IssueTokenInput,
  type TokenKeySource,
  type TokenVerifierOptions,
} from './jwt.js';
export { loadOrCreateSigningSecret, resolveTokenKeys } from './secret.js';
