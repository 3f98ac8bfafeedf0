// A site's webhook endpoint, as a real HTTP server on loopback: it verifies
// each request's signature, records what came, and answers as the test says
// (an error status, or holding the request open).
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { verifySignature } from '../../src/webhooks/signature';
import type { WebhookEnvelope } from '../../src/webhooks';

export interface Received {
  envelope: WebhookEnvelope;
  signed: boolean;
  /** The status the receiver answered. */
  status: number;
  headers: http.IncomingHttpHeaders;
}

export interface Receiver {
  url: string;
  port: number;
  /** Every request answered, in order. */
  requests: Received[];
  /** Requests that arrived, answered or not (a held one counts). */
  readonly arrived: number;
  /** The envelopes answered with 2xx, first delivery of each id only. */
  accepted(): WebhookEnvelope[];
  /** Resolves once `check` holds over the requests; fails after `ms`. */
  until(what: string, check: (r: Receiver) => boolean, ms?: number): Promise<void>;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  secret: string;
  /** The status for a request (the nth for its id, from 1); 200 by default. */
  answer?: (envelope: WebhookEnvelope, attempt: number) => number;
  /** Holds a request until this resolves. */
  hold?: () => Promise<void>;
  /** Listen on this port (a receiver that comes back where it was). */
  port?: number;
}

export async function startReceiver(t: TestContext | undefined, options: ReceiverOptions): Promise<Receiver> {
  const requests: Received[] = [];
  const attempts = new Map<string, number>();
  const changed = new EventEmitter();
  let arrived = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', async () => {
      arrived++;
      changed.emit('request');
      if (options.hold) await options.hold();
      const envelope = JSON.parse(body) as WebhookEnvelope;
      const signed = verifySignature(req.headers['webhook-signature'] as string | undefined, body, options.secret);
      const attempt = (attempts.get(envelope.id) ?? 0) + 1;
      attempts.set(envelope.id, attempt);
      const status = signed ? (options.answer?.(envelope, attempt) ?? 200) : 401;
      requests.push({ envelope, signed, status, headers: req.headers });
      res.writeHead(status).end();
      changed.emit('request');
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  t?.after(close);
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/hooks?site=1`,
    port,
    requests,
    get arrived() {
      return arrived;
    },
    accepted() {
      const seen = new Set<string>();
      return requests
        .filter((r) => r.status >= 200 && r.status < 300 && !seen.has(r.envelope.id) && seen.add(r.envelope.id))
        .map((r) => r.envelope);
    },
    until(what, check, ms = 15_000) {
      return new Promise((resolve, reject) => {
        const test = () => {
          if (!check(receiver)) return;
          clearTimeout(timer);
          changed.off('request', test);
          resolve();
        };
        const timer = setTimeout(() => {
          changed.off('request', test);
          reject(new Error(`receiver: ${what} not within ${ms} ms (${requests.length} requests)`));
        }, ms);
        timer.unref();
        changed.on('request', test);
        test();
      });
    },
    close,
  };
  return receiver;
}
