// `publish peerID, channel, params?`: the broadcaster registers (or updates)
// its stream and gets the channel's peers and its peerConfig.
import { publishRefusal } from '../../auth/rights';
import type { PeerConfig } from '../../ice';
import { missingStreamParams, streamIssues } from '../../limits';
import { unfitMessage, ZERO_STREAM, type EventSchemas } from '../../protocol';
import { bindings, describe, type Replies } from '../replies';
import type { CountRefusal, Joining } from './join';
import type { Handler } from './types';

export interface PublishDeps {
  schemas: Pick<EventSchemas, 'publish'>;
  joining: Joining;
  countRefusal: CountRefusal;
  replies: Pick<Replies, 'refuse' | 'debug'>;
  peerConfig: (account: string) => PeerConfig;
}

export const publishHandler =
  ({ schemas, joining, countRefusal, replies, peerConfig }: PublishDeps): Handler =>
  async (socket, args) => {
    const parsed = schemas.publish.safeParse(args);
    if (!parsed.success) return replies.refuse(socket, 'publishError', args[0], `Invalid publish: ${describe(parsed.error)}`, 'validation');
    const [peerID, channel, params] = parsed.data;
    const stream = params ?? ZERO_STREAM;
    const { account, identity } = socket.data;
    const denied = publishRefusal({ identity, restrictPublish: account.restrictPublish, peerID, channel });
    if (denied) {
      await countRefusal(socket, account.name, 'publish', [denied.issue]);
      return replies.refuse(socket, 'publishError', peerID, denied.message, 'rights');
    }
    // A limited plan counts and checks what the stream says it is: it must say it.
    const missing = missingStreamParams(account.plan, args[2]);
    if (missing.length)
      return replies.refuse(
        socket,
        'publishError',
        peerID,
        `Invalid publish: argument 2: ${missing.join(', ')} required by the plan`,
        'validation',
      );
    const issues = streamIssues(account.plan, stream);
    if (issues.length) {
      await countRefusal(socket, account.name, 'publish', issues);
      return replies.refuse(socket, 'publishError', peerID, unfitMessage(issues), ...issues);
    }
    const result = await joining.join(socket, { channel, peerID, role: 'broadcaster', stream });
    if (!result.ok) return joining.refuseJoin(socket, 'publish', peerID, channel, result.refusal);
    socket.emit('message', {
      type: 'peers',
      from: '_channel_',
      target: peerID,
      peers: result.peers,
      peerConfig: peerConfig(account.name),
    });
    replies.debug(() => ({ ...bindings(socket), channel, stream, peers: result.peers.length }), 'published');
  };
