// A self-signed certificate for localhost, made once per test process with
// openssl, in the CERTIFICATE prefix form (`<prefix>.key`, `<prefix>.crt`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let prefix: string | undefined;

export function testCertificate(): { prefix: string; ca: Buffer } {
  if (!prefix) {
    prefix = join(mkdtempSync(join(tmpdir(), 'vw-cert-')), 'localhost');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
        '-keyout', `${prefix}.key`, '-out', `${prefix}.crt`],
      { stdio: 'ignore' },
    );
  }
  return { prefix, ca: readFileSync(`${prefix}.crt`) };
}
