// Who may publish or subscribe what, as pure functions over the socket's
// signed-in identity and its account's restrictPublish. A socket without an
// identity (account token) keeps the original's behaviour.

export const RESTRICT_PUBLISH_MODES = ['username', 'prefix', 'suffix', 'contain'] as const;
export type RestrictPublish = (typeof RESTRICT_PUBLISH_MODES)[number];

/** A signed-in user: by user/PIN (every right, any channel) or by a signed access token. */
export interface Identity {
  user: string;
  /** Exact channel names or `prefix*` patterns; undefined: the account's restrictPublish decides. */
  channels?: string[] | undefined;
  publish: boolean;
  subscribe: boolean;
}

/** The refusals a client may see on `publishError` / `subscribeError`. */
export const RightsError = {
  mismatch: (user: string, peerID: string) => `Authentication mismatch: ${user} != ${peerID}`,
  nameRestricted: 'Unfit: nameRestricted.',
  publish: 'Not allowed: this sign-in may not publish.',
  subscribe: 'Not allowed: this sign-in may not subscribe.',
  channel: (channel: string) => `Not allowed: channel ${channel} is not in this sign-in's channels.`,
} as const;

/** Whether `channel` matches one of the patterns: an exact name, or `prefix*`. */
export function channelAllowed(patterns: readonly string[], channel: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? channel.startsWith(p.slice(0, -1)) : channel === p));
}

/** Whether `name` (the publisher) may publish `channel` under the account's restrictPublish. */
export function fitsRestriction(mode: RestrictPublish | undefined, name: string, channel: string): boolean {
  switch (mode) {
    case undefined:
      return true;
    case 'username':
      return channel === name;
    case 'prefix':
      return channel.startsWith(name);
    case 'suffix':
      return channel.endsWith(name);
    case 'contain':
      return channel.includes(name);
  }
}

export interface RightsRequest {
  identity: Identity | undefined;
  restrictPublish: RestrictPublish | undefined;
  peerID: string;
  channel: string;
}

/** A refused publish or subscribe: the message for the client, the issue for /stats. */
export interface RightsRefusal {
  issue: 'mismatch' | 'nameRestricted' | 'publishRight' | 'subscribeRight' | 'channelRight';
  message: string;
}

/** Why this publish is refused, or undefined when it may go on to the plan limits. */
export function publishRefusal({ identity, restrictPublish, peerID, channel }: RightsRequest): RightsRefusal | undefined {
  if (identity && identity.user !== peerID) return { issue: 'mismatch', message: RightsError.mismatch(identity.user, peerID) };
  if (identity && !identity.publish) return { issue: 'publishRight', message: RightsError.publish };
  if (identity?.channels)
    return channelAllowed(identity.channels, channel) ? undefined : { issue: 'channelRight', message: RightsError.channel(channel) };
  // As the original: without a signed-in user the publisher's own peerID is the name.
  if (fitsRestriction(restrictPublish, identity?.user ?? peerID, channel)) return undefined;
  return { issue: 'nameRestricted', message: RightsError.nameRestricted };
}

/** Why this subscribe is refused, or undefined. */
export function subscribeRefusal({ identity, peerID, channel }: Omit<RightsRequest, 'restrictPublish'>): RightsRefusal | undefined {
  if (!identity) return undefined;
  if (identity.user !== peerID) return { issue: 'mismatch', message: RightsError.mismatch(identity.user, peerID) };
  if (!identity.subscribe) return { issue: 'subscribeRight', message: RightsError.subscribe };
  if (identity.channels && !channelAllowed(identity.channels, channel))
    return { issue: 'channelRight', message: RightsError.channel(channel) };
  return undefined;
}
