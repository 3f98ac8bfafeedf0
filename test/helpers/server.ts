// Starts a real server on an ephemeral port over real TLS, as a site owner's
// configuration would describe it, and closes it after the test.
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import type { Account } from '../../src/accounts/account';
import type { AccountStore } from '../../src/accounts/store';
import { createServer, type ServerDeps, type SignalingServerHandle } from '../../src/app';
import { loadConfig } from '../../src/config';
import { testCertificate } from './tls';

export const TOKEN = 'test-static-token';
export const API_KEY = 'test-api-key';

export interface TestServer {
  server: SignalingServerHandle;
  url: string;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** A server with the static token, TLS and production mode unless `env` says otherwise. */
export async function startServer(
  t: TestContext | undefined,
  env: Record<string, string | undefined> = {},
  deps: ServerDeps = {},
): Promise<TestServer> {
  const { prefix } = testCertificate();
  const config = loadConfig({
    NODE_ENV: 'production',
    PORT: '0',
    HOST: '127.0.0.1',
    CERTIFICATE: prefix,
    STATIC_TOKEN: TOKEN,
    API_KEY,
    LOG_LEVEL: 'debug',
    ...env,
  });
  const logs: Record<string, unknown>[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const server = createServer({ ...config, production: config.production }, { logDestination, ...deps });
  const port = await server.listen();
  const url = `${server.secure ? 'https' : 'http'}://127.0.0.1:${port}`;
  const handle = { server, url, logs, close: () => server.close() };
  t?.after(() => server.close());
  return handle;
}

/** Accounts without a database: one account, found by its token (for instances that must share it). */
export function oneAccount(account: Account, token: string): AccountStore {
  return {
    findByToken: (given) => (given === token ? account : undefined),
    findByName: () => undefined,
    webhookAccounts: () => 0,
    reload: async () => ({ status: 'Updating Accounts', outcome: 'no-database', accounts: 1 }),
    isReady: () => true,
    hasLoaded: () => true,
    count: () => 1,
    close: async () => undefined,
  };
}
