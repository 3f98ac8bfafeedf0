// `npm run token -- --account NAME --user NAME [--channel NAME]... [--ttl 3600]`
// prints a signed access token for testing, minted with the account's token
// from the configured source (static token, MySQL or ACCOUNTS_FILE). A site
// mints its own tokens server-side (see README, Authentication).
import 'dotenv/config';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { fileAccountSource } from './accounts/file';
import { mysqlAccountSource } from './accounts/mysql';
import { createAccountStore } from './accounts/store';
import { mintToken } from './auth/tokens';
import { ConfigError, loadConfig } from './config';

const USAGE = 'usage: npm run token -- --account NAME --user NAME [--channel NAME]... [--ttl SECONDS] [--no-publish] [--no-subscribe]';

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        account: { type: 'string' },
        user: { type: 'string' },
        channel: { type: 'string', multiple: true },
        ttl: { type: 'string', default: '3600' },
        'no-publish': { type: 'boolean', default: false },
        'no-subscribe': { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const ttl = Number(args.ttl);
  if (!args.account || !args.user || !Number.isInteger(ttl) || ttl <= 0) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  if (ttl > config.tokenMaxTtlSeconds) {
    console.error(`--ttl ${ttl} is over TOKEN_MAX_TTL_SECONDS (${config.tokenMaxTtlSeconds}): the server would refuse it`);
    return 2;
  }
  const source = config.database
    ? mysqlAccountSource(config.database)
    : config.accountsFile
      ? fileAccountSource(config.accountsFile)
      : undefined;
  const accounts = createAccountStore({
    staticToken: config.staticToken,
    staticAccount: config.staticAccount,
    source,
    log: pino({ level: 'silent' }),
  });
  try {
    if (source) {
      const loaded = await accounts.reload();
      if (loaded.outcome === 'failed') {
        console.error(`accounts could not be read from ${source.description}: ${loaded.error}`);
        return 1;
      }
    }
    const account = accounts.findByName(args.account);
    if (!account) {
      console.error(`no account named "${args.account}"`);
      return 1;
    }
    const token = await mintToken({
      account,
      user: args.user,
      ttlSeconds: ttl,
      channels: args.channel,
      ...(args['no-publish'] && { publish: false }),
      ...(args['no-subscribe'] && { subscribe: false }),
    });
    process.stdout.write(`${token}\n`);
    return 0;
  } finally {
    await accounts.close();
  }
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(err instanceof ConfigError ? `Configuration error: ${err.message}` : err);
    process.exitCode = 1;
  },
);
