// The baseline: a bare Socket.IO 4 relay that speaks the same protocol the
// straightforward way (rooms, one Map of channels, a handler per event) with
// no validation, plan limits, stats or logging. Same TLS, same Socket.IO
// options as the server. Environment: PORT, HOST, CERTIFICATE (path prefix),
// STATIC_TOKEN.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { Server } from 'socket.io';

interface Peer {
  socketId: string;
  peerID: string;
  type: 'broadcaster' | 'player';
  account: string;
}

interface Channel {
  peers: Map<string, Peer>;
  publisher?: string | undefined;
}

const prefix = process.env.CERTIFICATE ?? '';
const token = process.env.STATIC_TOKEN ?? '';
const peerConfig = { iceServers: [{ urls: 'stun:stun.l.google.com:19302' }] };
const status = JSON.stringify({ server: 'bare relay' });

const server = https.createServer({ key: readFileSync(`${prefix}.key`), cert: readFileSync(`${prefix}.crt`) }, (req, res) => {
  res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'application/json' });
  res.end(status);
});
// The server's defaults: 64 KiB messages, any origin.
const io = new Server(server, { maxHttpBufferSize: 64 * 1024, cors: { origin: '*' } });
const channels = new Map<string, Channel>();

io.use((socket, next) => {
  const auth = socket.handshake.auth as { token?: unknown };
  next(auth.token === token ? undefined : new Error('ERROR: Authentication error'));
});

io.on('connection', (socket) => {
  let current: { channel: string; peerID: string } | undefined;

  const leave = () => {
    if (!current) return;
    const { channel, peerID } = current;
    current = undefined;
    const state = channels.get(channel);
    state?.peers.delete(peerID);
    if (state?.publisher === peerID) state.publisher = undefined;
    if (state?.peers.size === 0) channels.delete(channel);
    void socket.leave(channel);
    io.to(channel).emit('message', { from: peerID, target: 'all', payload: { action: 'close', message: `${peerID} left @${channel}` } });
  };

  // A socket is one peer in one channel; registering elsewhere leaves the old one.
  const register = (peerID: string, channel: string, type: Peer['type']): Channel => {
    if (current && (current.channel !== channel || current.peerID !== peerID)) leave();
    let state = channels.get(channel);
    if (!state) channels.set(channel, (state = { peers: new Map() }));
    state.peers.set(peerID, { socketId: socket.id, peerID, type, account: '_static' });
    if (type === 'broadcaster') state.publisher = peerID;
    current = { channel, peerID };
    void socket.join(channel);
    return state;
  };

  socket.on('publish', (peerID: string, channel: string) => {
    const state = register(peerID, channel, 'broadcaster');
    socket.emit('message', { type: 'peers', from: '_channel_', target: peerID, peers: [...state.peers.values()], peerConfig });
  });

  socket.on('subscribe', (peerID: string, channel?: string) => {
    const name = channel || 'VideoWhisper';
    const state = register(peerID, name, 'player');
    socket.to(name).emit('message', { type: 'peer', from: peerID, target: state.publisher ?? 'all', peerID });
  });

  socket.on('messagePeer', (message: { target?: unknown }) => {
    const target = current && channels.get(current.channel)?.peers.get(String(message?.target));
    if (target) io.to(target.socketId).emit('message', message);
  });

  socket.on('message', (message: unknown) => {
    if (current) socket.to(current.channel).emit('message', message);
  });

  socket.on('disconnect', leave);
});

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
// An orderly exit, so that `node --cpu-prof` writes its profile.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(0));
