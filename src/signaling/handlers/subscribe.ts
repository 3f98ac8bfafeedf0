// `subscribe peerID, channel?`: a player registers in the channel (default
// `VideoWhisper`); the channel's broadcaster hears of it once.
import { subscribeRefusal } from '../../auth/rights';
import { DEFAULT_CHANNEL, type EventSchemas } from '../../protocol';
import type { Delivery } from '../delivery';
import { bindings, describe, type Replies } from '../replies';
import type { CountRefusal, Joining } from './join';
import type { Handler } from './types';

export interface SubscribeDeps {
  schemas: Pick<EventSchemas, 'subscribe'>;
  joining: Joining;
  countRefusal: CountRefusal;
  replies: Pick<Replies, 'refuse' | 'debug'>;
  delivery: Pick<Delivery, 'toPeer'>;
}

export const subscribeHandler =
  ({ schemas, joining, countRefusal, replies, delivery }: SubscribeDeps): Handler =>
  async (socket, args) => {
    const parsed = schemas.subscribe.safeParse(args);
    if (!parsed.success)
      return replies.refuse(socket, 'subscribeError', args[0], `Invalid subscribe: ${describe(parsed.error)}`, 'validation');
    const [peerID, requested] = parsed.data;
    const channel = requested || DEFAULT_CHANNEL;
    const denied = subscribeRefusal({ identity: socket.data.identity, peerID, channel });
    if (denied) {
      await countRefusal(socket, socket.data.account.name, 'subscribe', [denied.issue]);
      return replies.refuse(socket, 'subscribeError', peerID, denied.message, 'rights');
    }
    const result = await joining.join(socket, { channel, peerID, role: 'player' });
    if (!result.ok) return joining.refuseJoin(socket, 'subscribe', peerID, channel, result.refusal);
    if (result.publisher && result.isNew)
      delivery.toPeer(result.publisher, 'message', { type: 'peer', from: peerID, target: result.publisher.peerID, peerID });
    replies.debug(() => ({ ...bindings(socket), channel }), 'subscribed');
  };
