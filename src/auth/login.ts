// User/PIN sign-in through the site's own login URL, as the original server
// asks it: POST {"account", "token", "user", "pin"} as JSON, answered
// {"login": true} or {"login": false, "message": "..."}. Every request has a
// deadline, and each account has a bounded number in flight, so a slow or
// dead login URL costs its own site a refusal and nothing more.
import { z } from 'zod';

export interface LoginRequest {
  url: string;
  account: string;
  /** The account's token, so the site knows the question comes from its signaling server. */
  token: string;
  user: string;
  pin: string;
}

export type LoginOutcome =
  | { kind: 'admitted' }
  | { kind: 'refused'; message: string | undefined }
  /** The login URL could not give an answer; `why` is for logs only. */
  | { kind: 'unavailable'; why: string };

export interface LoginClientOptions {
  /**
   * Deadline of one login request. A sign-in that must wait for a turn waits
   * at most as long again, so a sign-in takes at most twice this: the wait
   * and the request each get their own, and the one behind a silent login
   * URL still gets a whole request's time once its turn comes.
   */
  timeoutMs: number;
  /** Requests in flight per account; up to 16 times as many wait, the rest are refused at once. */
  concurrency: number;
  fetch?: typeof globalThis.fetch;
}

/** An answer is a few bytes; a larger one is not a login answer. */
const MAX_ANSWER_BYTES = 16 * 1024;
const MAX_MESSAGE_LENGTH = 200;

const answerSchema = z.looseObject({ login: z.boolean(), message: z.unknown().optional() });

export function createLoginClient({ timeoutMs, concurrency, fetch = globalThis.fetch }: LoginClientOptions) {
  const maxWaiting = concurrency * 16;
  // Per account: requests in flight and those waiting their turn. An entry
  // exists only while the account has either, so the map stays small.
  const slots = new Map<string, { active: number; waiting: (() => void)[] }>();

  function acquire(account: string, signal: AbortSignal): Promise<boolean> {
    let slot = slots.get(account);
    if (!slot) slots.set(account, (slot = { active: 0, waiting: [] }));
    if (slot.active < concurrency) {
      slot.active++;
      return Promise.resolve(true);
    }
    if (slot.waiting.length >= maxWaiting) return Promise.resolve(false);
    const queue = slot.waiting;
    return new Promise((resolve) => {
      const turn = () => {
        signal.removeEventListener('abort', giveUp);
        resolve(true);
      };
      const giveUp = () => {
        const at = queue.indexOf(turn);
        if (at >= 0) queue.splice(at, 1);
        resolve(false);
      };
      queue.push(turn);
      signal.addEventListener('abort', giveUp, { once: true });
    });
  }

  function release(account: string) {
    const slot = slots.get(account);
    if (!slot) return;
    const nextInLine = slot.waiting.shift();
    // The turn passes on: `active` stays the same.
    if (nextInLine) return nextInLine();
    if (--slot.active === 0) slots.delete(account);
  }

  async function ask(request: LoginRequest, signal: AbortSignal): Promise<LoginOutcome> {
    const response = await fetch(request.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ account: request.account, token: request.token, user: request.user, pin: request.pin }),
      signal,
    });
    const text = await readLimited(response, MAX_ANSWER_BYTES);
    if (text === undefined) return { kind: 'unavailable', why: `answer over ${MAX_ANSWER_BYTES} bytes (HTTP ${response.status})` };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { kind: 'unavailable', why: `answer is not JSON (HTTP ${response.status})` };
    }
    const answer = answerSchema.safeParse(body);
    if (!answer.success) return { kind: 'unavailable', why: `answer has no boolean "login" (HTTP ${response.status})` };
    // A site may refuse with an error status; it never admits with one.
    if (!answer.data.login) return { kind: 'refused', message: cleanMessage(answer.data.message) };
    if (!response.ok) return { kind: 'unavailable', why: `HTTP ${response.status}` };
    return { kind: 'admitted' };
  }

  return {
    /** Asks the login URL; never rejects. */
    async login(request: LoginRequest): Promise<LoginOutcome> {
      const waited = AbortSignal.timeout(timeoutMs);
      if (!(await acquire(request.account, waited)))
        return { kind: 'unavailable', why: waited.aborted ? `no turn within ${timeoutMs} ms` : 'too many sign-ins waiting' };
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        return await ask(request, signal);
      } catch (err) {
        const timedOut = signal.aborted;
        return { kind: 'unavailable', why: timedOut ? `no answer within ${timeoutMs} ms` : describe(err) };
      } finally {
        release(request.account);
      }
    },
  };
}

export type LoginClient = ReturnType<typeof createLoginClient>;

/** The body as text, or undefined when it is longer than `max` bytes. */
async function readLimited(response: Response, max: number): Promise<string | undefined> {
  const length = Number(response.headers.get('content-length'));
  if (length > max) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) return undefined; // leaving the loop cancels the stream
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The site's refusal text as a client may be shown it: one short line. */
function cleanMessage(message: unknown): string | undefined {
  if (typeof message !== 'string') return undefined;
  // eslint-disable-next-line no-control-regex
  const line = message.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line ? line.slice(0, MAX_MESSAGE_LENGTH) : undefined;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  return cause ? `${err.message}: ${String(cause.code ?? cause.message)}` : err.message;
}
