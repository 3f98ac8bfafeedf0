// The certificate files named by CERTIFICATE: `<prefix>.key`, `<prefix>.crt`
// and, when present, the CA chain `<prefix>.pem`.
import { existsSync, readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';

export function readCertificate(prefix: string): SecureContextOptions {
  const options: SecureContextOptions = { key: readFileSync(`${prefix}.key`), cert: readFileSync(`${prefix}.crt`) };
  if (existsSync(`${prefix}.pem`)) options.ca = readFileSync(`${prefix}.pem`);
  return options;
}
