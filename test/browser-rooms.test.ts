// The demo page's room mode in a real browser: three tabs, each signed in as
// its own user with a signed access token, join one room; each decodes the
// other two's cameras, and a chat line typed in one appears in the other two.
// Server and Chromium run in a loopback-only network namespace (see
// helpers/browser.ts).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { mintToken } from '../src/auth/tokens';
import { buildDemoClient, CHROMIUM, loopbackNetworkUnavailable, startDemoWorld } from './helpers/browser';
import { until } from './helpers/wait';

// Three fake cameras, encoders and decoders share two cores: the first frames may take a while.
/** How long a page may take to reach what a test waits for. */
const WAIT_MS = 45_000;

const artifacts = resolve(__dirname, 'artifacts');
const room = 'meeting';
const users = ['alice', 'bob', 'carol'] as const;

interface RoomLinkStats {
  peer: string;
  direction: 'in' | 'out';
  connection: string;
  framesDecoded: number;
  framesSent: number;
}
interface DemoWindow {
  demo: { state(): string; stats(): Promise<RoomLinkStats[]> };
}

const demoStats = (page: Page) => page.evaluate(() => (globalThis as unknown as DemoWindow).demo.stats());

/** Frames decoded from each of the other participants, once every one is above `above[peer]`. */
function decodedFromOthers(page: Page, user: string, above: Record<string, number> = {}) {
  const others = users.filter((u) => u !== user);
  return until(
    `${user} to decode video from ${others.join(' and ')}`,
    async () => {
      const incoming = (await demoStats(page)).filter((l) => l.direction === 'in');
      const frames = Object.fromEntries(others.map((peer) => [peer, incoming.find((l) => l.peer === peer)?.framesDecoded ?? 0]));
      return others.every((peer) => (frames[peer] ?? 0) > (above[peer] ?? 0)) ? frames : undefined;
    },
    WAIT_MS,
    100,
  );
}

function skipOrFail(t: TestContext, why: string) {
  const message = `browser test NOT RUN: ${why}`;
  if (process.env.CI === 'true') assert.fail(`${message} (CI=true requires it)`);
  console.warn(`\n*** ${message} ***\n`);
  t.skip(message);
}

test("demo room: three tabs see each other's cameras and chat", { timeout: 150_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) return skipOrFail(t, `${CHROMIUM} is missing (apt install chromium)`);
  const unavailable = loopbackNetworkUnavailable();
  if (unavailable) return skipOrFail(t, unavailable);

  buildDemoClient();
  const { server, chromium } = await startDemoWorld(t);
  const context = await chromium.browser.newContext({ viewport: { width: 1100, height: 760 } });
  const pages: { user: string; page: Page }[] = [];

  try {
    const started = performance.now();
    for (const user of users) {
      // What a site's page would hold: a token it minted for this user with the account's token.
      const token = await mintToken({ account: { name: '_static', token: server.token }, user, ttlSeconds: 600 });
      const page = await context.newPage();
      await page.goto(`${server.url}/demo?${new URLSearchParams({ mode: 'room', channel: room, token })}`);
      await page.getByRole('button', { name: 'Start' }).click();
      pages.push({ user, page });
    }

    const first = await Promise.all(pages.map(({ user, page }) => decodedFromOthers(page, user)));
    t.diagnostic(`all three decoding each other ${Math.round(performance.now() - started)} ms after the first Start`);
    const later = await Promise.all(pages.map(({ user, page }, i) => decodedFromOthers(page, user, first[i])));
    for (const [i, { user, page }] of pages.entries()) {
      t.diagnostic(`${user}: framesDecoded ${JSON.stringify(first[i])} -> ${JSON.stringify(later[i])}`);
      // Three tiles: its own camera and the two others'.
      assert.equal(await page.locator('#grid video').count(), 3);
      assert.match(await page.locator('#status').innerText(), new RegExp(`In room “${room}” as ${user}, with 2 others`));
    }

    const [sender, ...receivers] = pages as [{ user: string; page: Page }, ...{ user: string; page: Page }[]];
    const line = `hello from ${sender.user} ${Date.now()}`;
    await sender.page.getByLabel('Chat message').fill(line);
    await sender.page.getByRole('button', { name: 'Send' }).click();
    for (const { page } of [sender, ...receivers]) await page.locator('#chat li', { hasText: line }).waitFor({ timeout: 10_000 });
    for (const { page } of receivers)
      assert.match(await page.locator('#chat li').last().innerText(), new RegExp(`^${sender.user}\\s*${line}$`));

    mkdirSync(artifacts, { recursive: true });
    await sender.page.screenshot({ path: join(artifacts, 'demo-room.png'), fullPage: true });
  } catch (err) {
    // What each tab showed and measured, for the failure's story.
    for (const { user, page } of pages) {
      const seen = await Promise.all([page.locator('#status').innerText(), page.locator('#error').innerText(), demoStats(page)]).catch(
        String,
      );
      console.error(`${user}:`, JSON.stringify(seen));
    }
    mkdirSync(artifacts, { recursive: true });
    await Promise.allSettled(
      pages.map(({ user, page }) => page.screenshot({ path: join(artifacts, `failed-room-${user}.png`), timeout: 5000 })),
    );
    throw err;
  }
});
