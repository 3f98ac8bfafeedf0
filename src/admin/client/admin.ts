// The console page: signs in to the /admin namespace with the API key (kept
// in this page's memory only), draws what the server pushes, and sends the
// actions after a confirmation. Every name from a client or a site is put in
// the page with textContent, never as HTML.
import type { Socket, io as socketIo } from 'socket.io-client';
import type UPlot from 'uplot';
import type { AccountRowView, ActionResult, AdminAction, ChannelView, LiveView, Sample } from './view';

declare const io: typeof socketIo | undefined;
declare const uPlot: typeof UPlot | undefined;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLParagraphElement>('status');
const signIn = $<HTMLFormElement>('sign-in');
const keyInput = $<HTMLInputElement>('key');
const main = $<HTMLElement>('console');
const dialog = $<HTMLDialogElement>('confirm');

function say(text: string, error = false, token?: string) {
  status.replaceChildren(text);
  status.classList.toggle('error', error);
  if (token) {
    const shown = document.createElement('span');
    shown.className = 'token';
    shown.textContent = token;
    status.append(' ', shown);
  }
}

/** An element with text content (never HTML) and optional class. */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string | number, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function confirmAction(question: string): Promise<boolean> {
  $('confirm-text').textContent = question;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

// --- charts -------------------------------------------------------------------

interface Chart {
  plot: UPlot;
  figure: HTMLElement;
  series: string[];
}

/** Per-account charts: the element and the index of the value in Sample.accounts. */
const PER_ACCOUNT = [
  ['chart-accounts', 0],
  ['chart-account-channels', 1],
  ['chart-account-handshakes', 2],
  ['chart-account-refusals', 3],
] as const;
const charts: Record<string, Chart | undefined> = {};
let samples: Sample[] = [];
const COLORS = ['#2f6fde', '#e07a10', '#1b9e5a', '#b00020', '#7a3fc2', '#0f8a99', '#c2185b', '#5d6b00'];

function makeChart(id: string, names: string[]): Chart {
  const target = $(id);
  target.replaceChildren();
  const Plot = uPlot as typeof UPlot;
  const plot = new Plot(
    {
      width: Math.max(260, target.clientWidth || 360),
      height: 200,
      legend: { show: true },
      scales: { x: { time: true } },
      series: [{}, ...names.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length] as string, width: 1.5 }))],
    },
    [[], ...names.map(() => [])],
    target,
  );
  return { plot, figure: target, series: names };
}

function drawCharts() {
  if (typeof uPlot === 'undefined') return;
  const x = samples.map((s) => s.time / 1000);
  charts.usage ??= makeChart('chart-usage', ['connections', 'channels']);
  charts.rates ??= makeChart('chart-rates', ['handshakes/s', 'refusals/s']);
  charts.usage.plot.setData([x, samples.map((s) => s.connections), samples.map((s) => s.channels)]);
  charts.rates.plot.setData([x, samples.map((s) => s.handshakesPerSecond), samples.map((s) => s.refusalsPerSecond)]);
  const accountNames = [...new Set(samples.flatMap((s) => Object.keys(s.accounts)))].slice(0, 8);
  for (const [id, index] of PER_ACCOUNT) {
    let chart = charts[id];
    if (!chart || chart.series.join('\u0000') !== accountNames.join('\u0000')) {
      chart?.plot.destroy();
      chart = charts[id] = makeChart(id, accountNames);
    }
    chart.plot.setData([x, ...accountNames.map((name) => samples.map((s) => s.accounts[name]?.[index] ?? null))] as UPlot.AlignedData);
  }
  for (const chart of Object.values(charts)) if (chart) chart.figure.dataset.points = String(x.length);
}

// --- live view ----------------------------------------------------------------

let socket: Socket | undefined;
let view: LiveView | undefined;

async function act(action: AdminAction, question: string, done: string) {
  if (!socket || !(await confirmAction(question))) return;
  const result = await new Promise<ActionResult>((resolve) =>
    socket
      ?.timeout(15_000)
      .emit('action', action, (err: unknown, r: ActionResult) => resolve(err ? { ok: false, error: 'No answer from the server' } : r)),
  );
  if (!result.ok) return say(result.error, true);
  if (result.token) say(`${done}. The new token, shown this once:`, false, result.token);
  else say(done);
}

function usageCell(value: number, max: number, unit = '') {
  const cell = el('td', undefined, 'num');
  if (max > 0) {
    const meter = el('meter');
    meter.min = 0;
    meter.max = max;
    meter.value = Math.min(value, max);
    meter.high = max * 0.8;
    meter.optimum = 0;
    cell.append(meter, el('span', `${value} / ${max}${unit}`, 'value'));
  } else cell.append(el('span', `${value}${unit}`, 'value'));
  return cell;
}

function accountRow(a: AccountRowView, manageable: boolean) {
  const tr = el('tr');
  tr.dataset.account = a.name;
  const name = el('td');
  name.append(el('span', a.name));
  if (a.suspended) name.append(' ', el('span', 'suspended', 'suspended'));
  const plan = el('td', a.planName ?? (a.planId === null ? 'no plan' : `plan ${a.planId}`));
  const connections = usageCell(a.connections, a.maxConnections);
  connections.classList.add('connections');
  const actions = el('td');
  const box = el('div', undefined, 'actions');
  if (manageable && a.id !== null) {
    const id = a.id;
    const suspend = el('button', a.suspended ? 'Resume' : 'Suspend', a.suspended ? '' : 'danger');
    suspend.dataset.action = 'suspend';
    suspend.addEventListener('click', () =>
      act(
        { action: 'suspend', id, suspended: !a.suspended },
        `${a.suspended ? 'Resume' : 'Suspend'} the account "${a.name}"? ${a.suspended ? '' : 'Its next connections will be refused.'}`,
        `${a.name} ${a.suspended ? 'resumed' : 'suspended'}`,
      ),
    );
    const select = el('select');
    select.append(el('option', 'no plan'));
    select.options[0]!.value = '';
    for (const p of view?.plans ?? []) {
      const option = el('option', p.name);
      option.value = String(p.id);
      option.selected = p.id === a.planId;
      select.append(option);
    }
    select.addEventListener('change', () => {
      const planId = select.value ? Number(select.value) : null;
      const label = select.selectedOptions[0]?.textContent ?? '';
      void act({ action: 'plan', id, planId }, `Move "${a.name}" to ${label}?`, `${a.name} moved to ${label}`);
    });
    const rotate = el('button', 'Rotate token');
    rotate.addEventListener('click', () =>
      act(
        { action: 'rotate', id },
        `Rotate the token of "${a.name}"? The site must use the new token for new connections.`,
        `Token of ${a.name} rotated`,
      ),
    );
    box.append(suspend, select, rotate);
  }
  actions.append(box);
  tr.append(name, plan, connections, usageCell(a.bitrate, a.maxBitrate), el('td', a.refused, 'num'), actions);
  return tr;
}

function channelRow(c: ChannelView) {
  const tr = el('tr');
  const s = c.stream;
  const stream = s ? `${s.width}×${s.height} ${s.frameRate} fps, ${s.bitrate}+${s.audioBitrate} kbps, by ${s.publisher}` : 'not published';
  const peers = el('td');
  for (const p of c.peers) {
    const span = el('span', undefined, 'peer');
    span.append(el('span', `${p.peerID} (${p.type})`));
    const button = el('button', 'Disconnect');
    button.addEventListener('click', () =>
      act({ action: 'disconnect', socketId: p.socketId }, `Disconnect "${p.peerID}" from ${c.channel}?`, `${p.peerID} disconnected`),
    );
    span.append(button);
    peers.append(span);
  }
  tr.append(el('td', c.account), el('td', c.channel), el('td', stream), peers);
  return tr;
}

function render(next: LiveView) {
  view = next;
  $('total-connections').textContent = String(next.totals.connections);
  $('total-channels').textContent = String(next.totals.channels);
  $('total-peers').textContent = String(next.totals.peers);
  $('webhooks').textContent = `${next.webhooks.queued} / ${next.webhooks.dropped}`;
  // A select being used is not replaced under the pointer.
  const accountsBody = document.querySelector('#accounts tbody') as HTMLElement;
  if (!accountsBody.contains(document.activeElement) || document.activeElement?.tagName !== 'SELECT')
    accountsBody.replaceChildren(...next.accounts.map((a) => accountRow(a, next.manageable)));
  (document.querySelector('#channels tbody') as HTMLElement).replaceChildren(...next.channels.map(channelRow));
  const more = $('more-channels');
  more.hidden = next.moreChannels === 0;
  more.textContent = `and ${next.moreChannels} more channels`;
  const reasons = Object.entries(next.refusals).filter(([, n]) => n > 0);
  (document.querySelector('#refusals tbody') as HTMLElement).replaceChildren(
    ...(reasons.length
      ? reasons.map(([reason, n]) => {
          const tr = el('tr');
          tr.dataset.reason = reason;
          tr.append(el('td', reason), el('td', n, 'num'));
          return tr;
        })
      : [el('tr', 'none')]),
  );
  (document.querySelector('#instances tbody') as HTMLElement).replaceChildren(
    ...next.instances.map((i) => {
      const tr = el('tr');
      tr.append(
        el('td', `${i.id}${i.self ? ' (this one)' : ''}`),
        el('td', i.heartbeatAgeMs === null ? '—' : `${(i.heartbeatAgeMs / 1000).toFixed(1)} s ago`),
      );
      return tr;
    }),
  );
}

// --- sign-in --------------------------------------------------------------------

function start(key: string) {
  if (typeof io === 'undefined') return say('The Socket.IO client did not load from this server.', true);
  socket?.close();
  say('Signing in...');
  // The key lives in this socket's memory only: no URL, no storage.
  const s: Socket = io(`${location.origin}/admin`, { auth: { key }, transports: ['websocket'] });
  socket = s;
  s.on('connect', () => {
    signIn.hidden = true;
    main.hidden = false;
    say('Live');
  });
  s.on('connect_error', (err: Error) => {
    say(`Sign-in failed: ${err.message}`, true);
    if (!s.active) {
      signIn.hidden = false;
      main.hidden = true;
    }
  });
  s.on('disconnect', () => say('Disconnected; reconnecting...', true));
  s.on('history', (history: Sample[], live: LiveView) => {
    samples = history;
    render(live);
    drawCharts();
  });
  s.on('sample', (sample: Sample, live: LiveView) => {
    samples.push(sample);
    const hourAgo = sample.time - 3_600_000;
    while (samples.length && (samples[0] as Sample).time < hourAgo) samples.shift();
    render(live);
    drawCharts();
  });
}

signIn.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value;
  keyInput.value = '';
  start(key);
});
signIn.hidden = false;
say('Sign in with the server\u2019s API key.');

// For tests and the curious: how many points the charts hold.
(globalThis as unknown as { admin: unknown }).admin = { points: () => samples.length };
