// The `peerConfig` handed to broadcasters: STUN and TURN servers. With a
// shared secret (coturn's `use-auth-secret`), TURN credentials are minted per
// peer and expire (the TURN REST form coturn checks); otherwise the static
// user and password are handed out as the original did.
import { createHmac } from 'node:crypto';
import type { Config } from './config';
import { systemClock, type Clock } from './clock';

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}
export interface PeerConfig {
  iceServers: IceServer[];
}

export const PUBLIC_STUN = 'stun:stun.l.google.com:19302';

export type IceOptions = Pick<Config, 'coturnServer' | 'coturnUser' | 'coturnPassword' | 'coturnSecret' | 'coturnTtl'>;

/** TURN REST credentials: username `<unix expiry>:<account>`, credential base64(HMAC-SHA1(secret, username)). */
export function turnCredentials(secret: string, account: string, ttlSeconds: number, nowMs: number) {
  const username = `${Math.floor(nowMs / 1000) + ttlSeconds}:${account}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

export function createPeerConfig(options: IceOptions, clock: Pick<Clock, 'now'> = systemClock) {
  const { coturnServer: server } = options;
  if (!server) {
    const fixed: PeerConfig = { iceServers: [{ urls: PUBLIC_STUN }] };
    return (_account: string) => fixed;
  }
  const urls = [`turn:${server}?transport=udp`, `turn:${server}?transport=tcp`];
  const stun: IceServer = { urls: [`stun:${server}`] };
  return (account: string): PeerConfig => {
    const credentials = options.coturnSecret
      ? turnCredentials(options.coturnSecret, account, options.coturnTtl, clock.now())
      : { username: options.coturnUser ?? '', credential: options.coturnPassword ?? '' };
    return { iceServers: [stun, { ...credentials, urls }] };
  };
}
