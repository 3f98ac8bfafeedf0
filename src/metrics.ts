// Prometheus metrics (prom-client), one registry per server so several
// servers can live in one process. Counters are bumped on the hot path
// through pre-labelled children (relayed messages: plain numbers, added at
// scrape); gauges are read from the channel registry only when scraped.
//
// In a cluster, whichever instance is scraped answers for all: each
// instance's own series (counters, process metrics) carry its `instance`
// label, and the cluster-wide gauges (connections, channels, peers, rooms), read
// from Redis, appear once without it. A scrape reaching another instance then
// sees the same series, and no counter seems to reset.
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ChannelRegistry } from './channels/registry';
import type { InstanceMetrics } from './control';
import type { CertificateInfo } from './tls';
import type { RoomSummary } from './rooms/store';

/** Why something a client asked for was refused; a bounded set, so a safe label. */
export const REFUSAL_REASONS = [
  'auth',
  'suspended',
  'connections',
  'totalBitrate',
  'width',
  'height',
  'portrait',
  'bitrate',
  'frameRate',
  'audioBitrate',
  'channels',
  'peers',
  'uniqueness',
  'validation',
  'rate',
  'unavailable',
  'rights',
  'origin',
  'sdp',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Why the server cut a client off: it stopped reading, or sent pongs nobody asked for. */
export const DISCONNECT_REASONS = ['slowReader', 'unpromptedPong'] as const;
export type DisconnectReason = (typeof DISCONNECT_REASONS)[number];

/**
 * Why a client's event could not be handled: the registry could not answer
 * (Redis away or slow), or anything else, which is a bug. The client gets
 * `ERROR: Server unavailable` either way; operators need to tell them apart.
 */
export const FAILURE_CAUSES = ['registryUnavailable', 'bug'] as const;
export type FailureCause = (typeof FAILURE_CAUSES)[number];

const RELAYED_TYPES = ['offer', 'answer', 'candidate', 'other', 'broadcast'] as const;
type RelayedType = (typeof RELAYED_TYPES)[number];

/** What the signaling code reports; cheap enough for every event. */
export interface Telemetry {
  relayed(type: unknown): void;
  refused(reason: RefusalReason): void;
  disconnected(reason: DisconnectReason): void;
  /** An event, a handshake or a clean-up that failed, by cause. */
  failed(cause: FailureCause): void;
  /** Seconds from a socket's first packet to its acceptance or refusal. */
  handshake(seconds: number, outcome: 'accepted' | 'refused'): void;
}

export interface MetricsOptions {
  perAccount: boolean;
  /** The certificate served now, for its expiry. */
  certificate?: () => CertificateInfo | undefined;
  /** In a cluster: the other instances' own series. */
  otherInstances?: () => Promise<InstanceMetrics[]>;
  /** The rooms, read when scraped. */
  rooms?: () => Promise<RoomSummary[]>;
}

export function createMetrics(registry: ChannelRegistry, { perAccount, certificate, otherInstances, rooms }: MetricsOptions) {
  // This instance's own series.
  const register = new Registry();
  // Cluster-wide gauges, the same whichever instance answers.
  const shared = new Registry();
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 10 });

  // Relayed messages are counted as plain numbers and handed to prom-client
  // when scraped: an offer or candidate then costs one addition.
  const relayedSinceScrape = Object.fromEntries(RELAYED_TYPES.map((t) => [t, 0])) as Record<RelayedType, number>;
  const relayed = new Counter({
    name: 'videowhisper_relayed_messages_total',
    help: 'Signaling messages relayed between peers, by message type',
    labelNames: ['type'],
    registers: [register],
    collect() {
      for (const type of RELAYED_TYPES) {
        this.labels(type).inc(relayedSinceScrape[type]);
        relayedSinceScrape[type] = 0;
      }
    },
  });
  for (const type of RELAYED_TYPES) relayed.labels(type).inc(0);
  const refusals = new Counter({
    name: 'videowhisper_refusals_total',
    help: 'Connections, publishes, subscribes and events refused, by reason',
    labelNames: ['reason'],
    registers: [register],
  });
  for (const reason of REFUSAL_REASONS) refusals.labels(reason).inc(0);
  const disconnects = new Counter({
    name: 'videowhisper_disconnects_total',
    help: 'Clients the server cut off, by reason',
    labelNames: ['reason'],
    registers: [register],
  });
  for (const reason of DISCONNECT_REASONS) disconnects.labels(reason).inc(0);
  const failures = new Counter({
    name: 'videowhisper_event_failures_total',
    help: 'Client events, handshakes and clean-ups the server could not complete, by cause: registryUnavailable (an outage) or bug',
    labelNames: ['cause'],
    registers: [register],
  });
  for (const cause of FAILURE_CAUSES) failures.labels(cause).inc(0);
  const handshakes = new Histogram({
    name: 'videowhisper_handshake_duration_seconds',
    help: 'Time to authenticate a connection and check its plan',
    labelNames: ['outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [register],
  });

  let chatSinceScrape = 0;
  new Counter({
    name: 'videowhisper_room_messages_total',
    help: 'Room chat messages relayed',
    registers: [register],
    collect() {
      this.inc(chatSinceScrape);
      chatSinceScrape = 0;
    },
  });

  // Gauges read the registry when scraped: nothing to keep in step.
  const gauges = {
    connections: new Gauge({ name: 'videowhisper_connections', help: 'Live authenticated sockets', registers: [shared] }),
    channels: new Gauge({ name: 'videowhisper_channels', help: 'Channels with at least one peer', registers: [shared] }),
    peers: new Gauge({ name: 'videowhisper_peers', help: 'Registered peers by role', labelNames: ['role'], registers: [shared] }),
    rooms: new Gauge({ name: 'videowhisper_rooms', help: 'Rooms with at least one participant', registers: [shared] }),
    roomParticipants: new Gauge({ name: 'videowhisper_room_participants', help: 'Participants in rooms', registers: [shared] }),
    accountConnections: perAccount
      ? new Gauge({
          name: 'videowhisper_account_connections',
          help: 'Live sockets per account',
          labelNames: ['account'],
          registers: [shared],
        })
      : undefined,
    accountBitrate: perAccount
      ? new Gauge({
          name: 'videowhisper_account_bitrate_kbps',
          help: 'Plan bitrate usage per account (video + audio)',
          labelNames: ['account'],
          registers: [shared],
        })
      : undefined,
  };
  if (certificate)
    new Gauge({
      name: 'videowhisper_certificate_expiry_timestamp_seconds',
      help: 'When the TLS certificate served now expires (Unix time)',
      registers: [register],
      collect() {
        const info = certificate();
        if (info) this.set(Math.floor(info.notAfter.getTime() / 1000));
      },
    });

  async function refreshGauges() {
    let sockets = 0;
    let players = 0;
    let broadcasters = 0;
    let channels = 0;
    const accounts = await registry.usage();
    gauges.accountConnections?.reset();
    gauges.accountBitrate?.reset();
    for (const [account, usage, channelCount] of accounts) {
      channels += channelCount;
      sockets += usage.connections;
      players += usage.players;
      broadcasters += usage.broadcasters;
      gauges.accountConnections?.labels(account).set(usage.connections);
      gauges.accountBitrate?.labels(account).set(usage.bitrate + usage.audioBitrate);
    }
    gauges.connections.set(sockets);
    gauges.channels.set(channels);
    gauges.peers.labels('player').set(players);
    gauges.peers.labels('broadcaster').set(broadcasters);
    const summaries = rooms ? await rooms() : [];
    gauges.rooms.set(summaries.length);
    gauges.roomParticipants.set(summaries.reduce((sum, r) => sum + r.participants, 0));
  }

  const telemetry: Telemetry = {
    relayed(type) {
      relayedSinceScrape[typeof type === 'string' && Object.hasOwn(relayedSinceScrape, type) ? (type as RelayedType) : 'other']++;
    },
    refused: (reason) => refusals.labels(reason).inc(),
    disconnected: (reason) => disconnects.labels(reason).inc(),
    failed: (cause) => failures.labels(cause).inc(),
    handshake: (seconds, outcome) => handshakes.labels(outcome).observe(seconds),
  };

  /** This instance's own series, as another instance asks for them. */
  const local = () => register.getMetricsAsJSON() as Promise<InstanceMetrics>;

  return {
    telemetry,
    /** Counts one room chat message relayed. */
    chatRelayed: () => void chatSinceScrape++,
    contentType: register.contentType,
    local,
    /** Names this instance in its series (in a cluster). */
    labelInstance: (instance: string) => register.setDefaultLabels({ instance }),
    async render(): Promise<string> {
      await refreshGauges();
      if (!otherInstances) return Registry.merge([register, shared]).metrics();
      const [own, others] = await Promise.all([local(), otherInstances()]);
      // Each instance's values carry their own `instance` label: "summing"
      // them keeps them apart, and no series is dropped as some defaults would be.
      const all = [own, ...others].map((metrics) => metrics.map((metric) => ({ ...metric, aggregator: 'sum' as const })));
      return Registry.merge([AggregatorRegistry.aggregate(all), shared]).metrics();
    },
    close: () => {
      register.clear();
      shared.clear();
    },
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
