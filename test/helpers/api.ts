// GET requests to the REST API over the test server's TLS.
import https from 'node:https';
import { testCertificate } from './tls';

export interface ApiResponse {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
  json<T = unknown>(): T;
}

export function get(base: string, path: string, headers: Record<string, string> = {}): Promise<ApiResponse> {
  return send(base, 'GET', path, undefined, headers);
}

/** Any method with an optional JSON body. */
export function send(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(
      new URL(path, base),
      {
        method,
        ca: testCertificate().ca,
        headers: { ...(payload === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers, json: <T>() => JSON.parse(text) as T }));
      },
    );
    req.on('error', reject);
    // A request the server never answers fails instead of hanging the test.
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.end(payload);
  });
}
