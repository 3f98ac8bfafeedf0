// Self-signed certificates for localhost, made with openssl in the
// CERTIFICATE prefix form (`<prefix>.key`, `<prefix>.crt`): one per test
// process for the tests, and the bench's own.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** ECDSA P-256, as most certificates issued today, or RSA-2048, as older ones. */
export type KeyType = 'ecdsa' | 'rsa';

const NEW_KEY: Record<KeyType, string[]> = {
  ecdsa: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
  rsa: ['-newkey', 'rsa:2048'],
};

/** Writes `<prefix>.key` and `<prefix>.crt` for localhost, valid two days; returns the certificate. */
export function makeCertificate(prefix: string, keyType: KeyType): Buffer {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...NEW_KEY[keyType],
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '-keyout',
      `${prefix}.key`,
      '-out',
      `${prefix}.crt`,
    ],
    { stdio: 'ignore' },
  );
  return readFileSync(`${prefix}.crt`);
}

let prefix: string | undefined;

export function testCertificate(): { prefix: string; ca: Buffer } {
  if (!prefix) {
    prefix = join(mkdtempSync(join(tmpdir(), 'vw-cert-')), 'localhost');
    // ECDSA, as the README recommends.
    makeCertificate(prefix, 'ecdsa');
  }
  return { prefix, ca: readFileSync(`${prefix}.crt`) };
}
