// Webhook signatures in the style sites already verify (Stripe's):
// `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
// The timestamp is signed too, so a captured request cannot be replayed later.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { systemClock } from '../clock';

export const SIGNATURE_HEADER = 'Webhook-Signature';

export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/**
 * Whether `header` signs `body` with `secret`, made within `toleranceSeconds`
 * of `nowSeconds`. What a receiver runs (the README has it in PHP too).
 */
export function verifySignature(
  header: string | undefined,
  body: string,
  secret: string,
  { nowSeconds = Math.floor(systemClock.now() / 1000), toleranceSeconds = 300 } = {},
): boolean {
  if (!header) return false;
  const parts = new Map<string, string[]>();
  for (const part of header.split(',')) {
    const [key, value] = part.split('=', 2);
    if (key && value) parts.set(key.trim(), [...(parts.get(key.trim()) ?? []), value.trim()]);
  }
  const t = Number(parts.get('t')?.[0]);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return (parts.get('v1') ?? []).some((v) => {
    const given = Buffer.from(v);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
