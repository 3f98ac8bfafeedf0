// The demo page at /demo: broadcast the camera in one tab, watch it in
// another, and see whether signaling and WebRTC work through this server
// before wiring up the HTML5 Videochat app. The page speaks the same protocol
// as the app and uses the peerConfig the server hands out.
import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { type Response } from 'express';

// This file runs from src/demo (tsx) or dist/demo (node): either way the
// project root is two levels up. The HTML and CSS stay in src/; the browser
// script is compiled into dist/ by `npm run build`.
const root = path.resolve(__dirname, '..', '..');
const pageDir = path.join(root, 'src', 'demo', 'page');
const clientDir = path.join(root, 'dist', 'demo', 'client');
/** The page's modules: demo.js imports the others. */
const clientScripts = new Set(['demo.js', 'media.js', 'room.js']);

// Everything the page loads comes from this server (the icon is an empty
// data: URL, so browsers do not ask for /favicon.ico); Socket.IO's WebSocket
// is same-origin too, so 'self' covers it.
const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function sendFile(res: Response, file: string) {
  res.sendFile(file, { headers: { 'Cache-Control': 'no-cache' } });
}

export function createDemoRouter(): express.Router {
  const router = express.Router();
  router.use((_req, res, next) => {
    res.set({
      'Content-Security-Policy': contentSecurityPolicy,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    });
    next();
  });
  // Mounted at /demo, '/' answers both /demo and /demo/.
  router.get('/', (_req, res) => sendFile(res, path.join(pageDir, 'index.html')));
  router.get('/demo.css', (_req, res) => sendFile(res, path.join(pageDir, 'demo.css')));
  router.get('/:script', (req, res, next) => {
    const { script } = req.params;
    if (!clientScripts.has(script)) return next();
    const file = path.join(clientDir, script);
    // Checked on each request, so a build made while the server runs is picked up.
    if (!existsSync(file)) {
      res.status(503).type('text/plain').send('The demo script is not built yet: run `npm run build` on the server.');
      return;
    }
    sendFile(res, file);
  });
  return router;
}
