// Tests that need a service this machine may lack: outside CI they are
// skipped with a loud banner, shown once per service; with CI=true they fail,
// so that a CI run cannot pass without them.
import type { TestContext } from 'node:test';

const warned = new Set<string>();

/**
 * True when the test should go on (`reason` is undefined); otherwise skips it
 * loudly, or throws in CI. `help` says how to provide the service.
 */
export function requireService(t: TestContext, service: string, reason: string | undefined, help: string[]): boolean {
  if (!reason) return true;
  if (process.env.CI === 'true') throw new Error(`${service} tests cannot run in CI: ${reason}`);
  if (!warned.has(service)) {
    warned.add(service);
    const line = '!'.repeat(78);
    const banner = [`${service.toUpperCase()} TESTS SKIPPED: ${reason}`, ...help, 'With CI=true this is a failure.'];
    console.warn(`\n${line}\n${banner.map((text) => `!! ${text}\n`).join('')}${line}\n`);
  }
  t.skip(`${service} tests skipped: ${reason}`);
  return false;
}
