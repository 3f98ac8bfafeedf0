// The three ways a socket says who it is, resolved to an account and, for a
// signed-in user, an identity:
//   { token }                account token (or the static token): the account, no user;
//   { account, user, pin }   user/PIN, checked by the account's login URL;
//   { token: <JWT> }         a signed access token minted by the site.
import type { Account } from '../accounts/account';
import type { AccountStore } from '../accounts/store';
import type { RefusalReason } from '../metrics';
import { HandshakeError, SignInError } from '../protocol';
import type { LoginClient } from './login';
import type { Identity } from './rights';
import { looksLikeJwt, type TokenFailure, type TokenVerifier } from './tokens';

export type SignInWay = 'token' | 'login' | 'signed';

/** What the handshake's schema let through. */
export interface Credentials {
  token?: string | undefined;
  account?: string | undefined;
  user?: string | undefined;
  pin?: string | undefined;
}

export type SignInResult =
  | { ok: true; way: SignInWay; account: Account; identity?: Identity | undefined }
  | {
      ok: false;
      way: SignInWay;
      message: string;
      reason: RefusalReason;
      /** Counts toward the address's failed-attempt limit (a wrong secret, not an outage). */
      failed: boolean;
      /** For logs only: never sent to the client. */
      detail?: string;
      account?: Account;
    };

export interface SignInDeps {
  accounts: Pick<AccountStore, 'findByToken' | 'findByName' | 'hasLoaded'>;
  login: LoginClient;
  verifyToken: TokenVerifier;
  /** The static token's account name: that token wins over user/PIN fields, as in the original. */
  staticName: string;
}

const tokenMessages: Record<Exclude<TokenFailure, 'unknownAccount'>, string> = {
  expired: SignInError.tokenExpired,
  notYetValid: SignInError.tokenNotYetValid,
  lifetime: SignInError.tokenLifetime,
  invalid: SignInError.tokenInvalid,
};

export function createSignIn({ accounts, login, verifyToken, staticName }: SignInDeps) {
  const refuse = (way: SignInWay, message: string, failed: boolean, detail?: string, account?: Account): SignInResult => ({
    ok: false,
    way,
    message,
    reason: failed ? 'auth' : 'unavailable',
    failed,
    ...(detail !== undefined && { detail }),
    ...(account && { account }),
  });
  // Until the accounts have loaded once (database down at start), an unknown
  // name or token is not wrong: the client should retry later.
  const unknown = (way: SignInWay, message: string, detail: string) =>
    accounts.hasLoaded() ? refuse(way, message, true, detail) : refuse(way, HandshakeError.unavailable, false, 'accounts not loaded yet');

  async function withPin(name: string, user: string, pin: string): Promise<SignInResult> {
    const account = accounts.findByName(name);
    if (!account) return unknown('login', SignInError.accountNotFound, `no account named ${name}`);
    if (!account.loginURL) return refuse('login', SignInError.noLogin, true, 'no loginURL', account);
    const outcome = await login.login({ url: account.loginURL, account: account.name, token: account.token ?? '', user, pin });
    if (outcome.kind === 'admitted') return { ok: true, way: 'login', account, identity: { user, publish: true, subscribe: true } };
    if (outcome.kind === 'refused')
      return refuse('login', `ERROR: ${outcome.message ?? SignInError.userRefusedText}`, true, 'login refused', account);
    return refuse('login', SignInError.loginUnavailable, false, outcome.why, account);
  }

  async function withToken(token: string): Promise<SignInResult> {
    const account = accounts.findByToken(token);
    if (account) return { ok: true, way: 'token', account };
    if (!looksLikeJwt(token)) return unknown('token', HandshakeError.authentication, 'unknown token');
    const check = await verifyToken(token);
    if (check.ok) return { ok: true, way: 'signed', account: check.account, identity: check.identity };
    if (check.failure === 'unknownAccount') return unknown('signed', HandshakeError.authentication, check.detail);
    return refuse('signed', tokenMessages[check.failure], true, check.detail);
  }

  return function signIn(credentials: Credentials): Promise<SignInResult> {
    const { token, account, user, pin } = credentials;
    // The original's order: the static token first, then user/PIN, then any other token.
    const byToken = token ? accounts.findByToken(token) : undefined;
    if (byToken && byToken.name === staticName) return Promise.resolve({ ok: true, way: 'token', account: byToken });
    if (account && user && pin) return withPin(account, user, pin);
    if (token) return withToken(token);
    return Promise.resolve(refuse('token', HandshakeError.authentication, true, 'no token, and no account, user and pin'));
  };
}

export type SignIn = ReturnType<typeof createSignIn>;
