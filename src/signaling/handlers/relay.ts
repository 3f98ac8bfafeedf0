// What `messagePeer` and `message` check before relaying a peer's message.
import type { Account } from '../../accounts/account';
import type { RefusalReason } from '../../metrics';
import { SERVER_MESSAGE_TYPES } from '../../protocol';
import { capSdp, sdpCaps } from '../../sdp';

/**
 * Checks a message a client asked to relay, and with ENFORCE_SDP caps the
 * SDP it carries to the sender's plan (in place: the object is the
 * server's own). The refusal a client sees, or undefined when it may go.
 */
export function relayRefusal(
  account: Pick<Account, 'plan'>,
  message: Record<string, unknown>,
  enforceSdp: boolean,
): { message: string; reason: RefusalReason } | undefined {
  const { type } = message;
  // `peers` and `peer` come from the server only: a peer's copy could hand out its own peerConfig.
  if (typeof type === 'string' && SERVER_MESSAGE_TYPES.has(type))
    return { message: `Invalid message: type ${type} is sent by the server only`, reason: 'validation' };
  if (!enforceSdp) return undefined;
  const content = message.content;
  if (typeof content !== 'object' || content === null || !('sdp' in content)) return undefined;
  const caps = sdpCaps(account.plan);
  if (!caps) return undefined;
  const { sdp } = content as { sdp: unknown };
  const capped = typeof sdp === 'string' ? capSdp(sdp, caps) : { error: 'not a string' };
  if ('error' in capped) return { message: `Invalid SDP: ${capped.error}`, reason: 'sdp' };
  message.content = { ...content, sdp: capped.sdp };
  return undefined;
}
