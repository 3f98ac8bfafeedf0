// Signed access tokens: a JWT a site mints server-side, HS256 with its
// account token as the key, so a browser holds a short-lived right for one
// user instead of the account token. Verified with jose: the algorithm is
// pinned, `exp` is required and capped, `nbf` honoured, the signature
// compared in constant time.
import type * as Jose from 'jose';
import { z } from 'zod';
import type { Account } from '../accounts/account';
import type { Identity } from './rights';
import { systemClock, type Clock } from '../clock';

/** Clocks of the site and of this server may differ by this much. */
export const CLOCK_TOLERANCE_SECONDS = 10;
/** Channel patterns one token may carry. */
export const MAX_TOKEN_CHANNELS = 100;

export type TokenFailure = 'unknownAccount' | 'expired' | 'notYetValid' | 'lifetime' | 'invalid';

export type TokenCheck = { ok: true; account: Account; identity: Identity } | { ok: false; failure: TokenFailure; detail: string };

export interface TokenVerifierOptions {
  findAccount: (name: string) => Account | undefined;
  maxTtlSeconds: number;
  maxNameLength: number;
  /** Wall clock in ms: token times are wall-clock seconds. */
  clock?: Pick<Clock, 'now'>;
}

/** Three base64url parts: a compact JWS (an unsigned one has an empty third part). */
export const looksLikeJwt = (token: string) => /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token);

// Loaded at the first signed token, so a server whose sites send account tokens never loads jose
// (1.4 MiB of heap); require() keeps the verifier's callers synchronous until then.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, see above
const jose = () => require('jose') as typeof Jose;

const keyOf = (account: Account) => new TextEncoder().encode(account.token);

export function createTokenVerifier({ findAccount, maxTtlSeconds, maxNameLength, clock = systemClock }: TokenVerifierOptions) {
  const name = z.string().min(1).max(maxNameLength);
  const claimsSchema = z.looseObject({
    sub: name,
    exp: z.number(),
    channels: z.array(name).max(MAX_TOKEN_CHANNELS).optional(),
    publish: z.boolean().optional(),
    subscribe: z.boolean().optional(),
  });

  return async function verifyToken(token: string): Promise<TokenCheck> {
    let issuer: unknown;
    try {
      issuer = jose().decodeJwt(token).iss;
    } catch (err) {
      return { ok: false, failure: 'invalid', detail: (err as Error).message };
    }
    const account = typeof issuer === 'string' ? findAccount(issuer) : undefined;
    if (!account?.token) return { ok: false, failure: 'unknownAccount', detail: `issuer ${String(issuer)} is no account` };
    const currentDate = new Date(clock.now());
    let payload;
    try {
      ({ payload } = await jose().jwtVerify(token, keyOf(account), {
        algorithms: ['HS256'],
        issuer: account.name,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate,
      }));
    } catch (err) {
      const { errors } = jose();
      if (err instanceof errors.JWTExpired) return { ok: false, failure: 'expired', detail: err.message };
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'nbf')
        return { ok: false, failure: 'notYetValid', detail: err.message };
      return { ok: false, failure: 'invalid', detail: (err as Error).message };
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success)
      return { ok: false, failure: 'invalid', detail: claims.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
    const { sub, exp, channels, publish, subscribe } = claims.data;
    if (exp - currentDate.getTime() / 1000 > maxTtlSeconds + CLOCK_TOLERANCE_SECONDS)
      return { ok: false, failure: 'lifetime', detail: `exp is more than ${maxTtlSeconds} s away` };
    return {
      ok: true,
      account,
      identity: { user: sub, channels, publish: publish ?? true, subscribe: subscribe ?? true },
    };
  };
}

export type TokenVerifier = ReturnType<typeof createTokenVerifier>;

export interface MintOptions {
  account: Pick<Account, 'name' | 'token'>;
  user: string;
  ttlSeconds: number;
  channels?: string[] | undefined;
  publish?: boolean | undefined;
  subscribe?: boolean | undefined;
}

/** Mints a token as a site would (used by `npm run token`). */
export function mintToken({ account, user, ttlSeconds, channels, publish, subscribe }: MintOptions): Promise<string> {
  if (!account.token) throw new Error(`account ${account.name} has no token`);
  return new (jose().SignJWT)({
    ...(channels?.length && { channels }),
    ...(publish !== undefined && { publish }),
    ...(subscribe !== undefined && { subscribe }),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(account.name)
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(keyOf(account as Account));
}
