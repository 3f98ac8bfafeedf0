// The certificates named by CERTIFICATE: found under either naming scheme,
// checked (readable, a key that matches), described (host names, expiry) and
// watched, so that a renewal (certbot, cPanel AutoSSL) is served to new
// connections without a restart. Established connections keep their session.
// One ECDSA and one RSA certificate may be served side by side: each client
// gets the one it supports, so old clients keep working while the rest get
// ECDSA's cheaper handshake.
import { constants, createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createSecureContext, DEFAULT_CIPHERS, type SecureContextOptions } from 'node:tls';

/** A certificate problem an operator can fix; its message is one line. */
export class CertificateError extends Error {}

export interface CertificateFiles {
  key: string;
  cert: string;
  /** The CA chain, when kept apart from the certificate. */
  ca?: string;
}

export interface CertificateInfo {
  /** DNS names (subjectAltName, else the common name), first one first. */
  names: string[];
  notAfter: Date;
  serial: string;
}

/** What CERTIFICATE names: one certificate, or an ECDSA and an RSA one served together. */
export interface Certificate {
  files: CertificateFiles[];
  options: SecureContextOptions;
  /** The certificate that expires first, which is the one an expiry alert must see. */
  info: CertificateInfo;
  /** Each certificate, in the order CERTIFICATE names them. */
  all: (CertificateInfo & { keyType: string })[];
}

/**
 * `CERTIFICATE` is either a path prefix (`<prefix>.key`, `<prefix>.crt` and,
 * when present, the chain `<prefix>.pem`) or a directory holding Let's
 * Encrypt's `privkey.pem` and `fullchain.pem` (/etc/letsencrypt/live/<name>).
 */
export function certificateFiles(location: string): CertificateFiles {
  const isDirectory = existsSync(location) && statSync(location).isDirectory();
  const dir = isDirectory ? location : dirname(location);
  if (!isDirectory && existsSync(`${location}.key`) && existsSync(`${location}.crt`)) {
    const files: CertificateFiles = { key: `${location}.key`, cert: `${location}.crt` };
    if (existsSync(`${location}.pem`)) files.ca = `${location}.pem`;
    return files;
  }
  // Also when CERTIFICATE names one of Let's Encrypt's files.
  if ((isDirectory || ['privkey.pem', 'fullchain.pem'].includes(basename(location))) && existsSync(join(dir, 'privkey.pem'))) {
    if (existsSync(join(dir, 'fullchain.pem'))) return { key: join(dir, 'privkey.pem'), cert: join(dir, 'fullchain.pem') };
  }
  throw new CertificateError(
    `CERTIFICATE: found neither ${location}.key and ${location}.crt nor privkey.pem and fullchain.pem in ${isDirectory ? location : dir}`,
  );
}

/**
 * CERTIFICATE's locations: one, or several separated by commas (an ECDSA
 * and an RSA certificate, such as certbot's `--key-type ecdsa` and
 * `--key-type rsa` lineages of one domain).
 */
export function certificateSet(locations: string): CertificateFiles[] {
  const each = locations
    .split(',')
    .map((location) => location.trim())
    .filter(Boolean);
  if (each.length === 0) throw new CertificateError('CERTIFICATE: no location given');
  return each.map(certificateFiles);
}

function readPem(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    throw new CertificateError(`CERTIFICATE: cannot read ${path} (${code ?? message})`);
  }
}

interface OneCertificate {
  key: Buffer;
  cert: Buffer;
  ca?: Buffer;
  keyType: string;
  info: CertificateInfo;
}

/** Reads and checks one certificate's files; throws a CertificateError with a one-line message. */
function readOne(files: CertificateFiles): OneCertificate {
  const key = readPem(files.key);
  const cert = readPem(files.cert);
  const options: SecureContextOptions = { key, cert };
  if (files.ca) options.ca = readPem(files.ca);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new CertificateError(`CERTIFICATE: ${files.cert} is not a PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new CertificateError(`CERTIFICATE: ${files.key} is not a PEM private key (or it needs a passphrase)`);
  }
  if (!x509.checkPrivateKey(privateKey))
    throw new CertificateError(`CERTIFICATE: the key ${files.key} does not match the certificate ${files.cert}`);
  try {
    createSecureContext(options);
  } catch (err) {
    throw new CertificateError(`CERTIFICATE: ${files.cert}: ${(err as Error).message.split('\n')[0]}`);
  }
  return {
    key,
    cert,
    ...(options.ca ? { ca: options.ca as Buffer } : {}),
    keyType: privateKey.asymmetricKeyType ?? 'unknown',
    info: describe(x509),
  };
}

const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/**
 * The cipher suites, in the server's order: Node's own list, with AES-128-GCM
 * first among TLS 1.3's. Browsers ask for it first anyway; Node's own client
 * (socket.io-client, `ws`) asks for AES-256-GCM-SHA384, whose handshake hashes
 * with SHA-384 (no SHA instructions in the CPU for it) and whose records take
 * 14 AES rounds instead of 10. A client that puts ChaCha20 first (a phone
 * without AES instructions) still gets ChaCha20.
 */
const CIPHER_ORDER: Pick<SecureContextOptions, 'ciphers' | 'honorCipherOrder' | 'secureOptions'> = {
  ciphers: [...TLS13_SUITES, ...DEFAULT_CIPHERS.split(':').filter((suite) => !TLS13_SUITES.includes(suite))].join(':'),
  honorCipherOrder: true,
  secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
};

/** Reads and checks every certificate; throws a CertificateError with a one-line message. */
export function readCertificate(files: CertificateFiles | CertificateFiles[]): Certificate {
  const list = Array.isArray(files) ? files : [files];
  const read = list.map(readOne);
  // OpenSSL keeps one certificate per key type: a second of the same type would silently replace the first.
  const types = read.map((c) => c.keyType);
  const twice = types.find((type, i) => types.indexOf(type) !== i);
  if (twice)
    throw new CertificateError(`CERTIFICATE: two ${twice.toUpperCase()} certificates; give at most one per key type (ECDSA and RSA)`);
  const options: SecureContextOptions = {
    ...CIPHER_ORDER,
    ...(read.length === 1 ? { key: read[0]!.key, cert: read[0]!.cert } : { key: read.map((c) => c.key), cert: read.map((c) => c.cert) }),
  };
  const chains = read.flatMap((c) => (c.ca ? [c.ca] : []));
  if (chains.length) options.ca = chains.length === 1 ? chains[0] : chains;
  if (read.length > 1)
    try {
      createSecureContext(options);
    } catch (err) {
      throw new CertificateError(`CERTIFICATE: the certificates cannot be served together: ${(err as Error).message.split('\n')[0]}`);
    }
  const first = read.reduce((soonest, c) => (c.info.notAfter < soonest.info.notAfter ? c : soonest));
  return { files: list, options, info: first.info, all: read.map((c) => ({ ...c.info, keyType: c.keyType })) };
}

function describe(x509: X509Certificate): CertificateInfo {
  const alt = (x509.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
  const commonName = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1];
  const names = alt.length ? alt : commonName ? [commonName] : [];
  return { names, notAfter: new Date(x509.validTo), serial: x509.serialNumber };
}

/** The host name clients should use: the first name that is not a wildcard. */
export function publicName(info: CertificateInfo): string | undefined {
  return info.names.find((name) => !name.includes('*')) ?? info.names[0]?.replace(/^\*\./, '');
}

/**
 * Calls `changed` once the files have settled after a change (renewal tools
 * write several files, certbot swaps symlinks). Watches the directories, so a
 * file replaced by a rename is still seen. Returns a function that stops it.
 */
export function watchCertificate(files: CertificateFiles | CertificateFiles[], changed: () => void, settleMs = 250): () => void {
  const paths = (Array.isArray(files) ? files : [files]).flatMap((f) => [f.key, f.cert, f.ca]).filter((p): p is string => Boolean(p));
  const names = new Set(paths.map((p) => basename(p)));
  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name && !names.has(name.toString())) return;
        clearTimeout(timer);
        timer = setTimeout(changed, settleMs);
        timer.unref();
      });
      watcher.on('error', () => undefined); // the directory went away: SIGUSR2 still reloads
      watchers.push(watcher);
    } catch {
      // Not watchable (permissions): SIGUSR2 still reloads.
    }
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}
