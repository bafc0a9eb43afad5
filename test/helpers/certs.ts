/**
 * A throwaway certificate authority for the network tests, made with the openssl CLI in a
 * scratch directory: a CA, and certificates it signs for servers (by DNS name or IP) and
 * clients (by common name). P-256 keys: quick to make. Valid for two days.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Issued {
  /** PEM files. */
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCa {
  dir: string;
  /** The CA's certificate, PEM: what a client or server trusts. */
  certFile: string;
  cert: string;
  /** A certificate for `commonName`, with `altNames` (`DNS:localhost`, `IP:127.0.0.1`). */
  issue(name: string, commonName: string, altNames?: string[]): Issued;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function createTestCa(label = 'EduPulse Test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'edupulse-ca-'));
  openssl(
    [
      'req',
      '-x509',
      ...KEY,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      `/CN=${label}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const certFile = join(dir, 'ca.crt');
  return {
    dir,
    certFile,
    cert: readFileSync(certFile, 'utf8'),
    issue(name, commonName, altNames = []) {
      const ext = join(dir, `${name}.ext`);
      writeFileSync(
        ext,
        [
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth,clientAuth',
          ...(altNames.length > 0 ? [`subjectAltName=${altNames.join(',')}`] : []),
        ].join('\n'),
      );
      openssl(
        [
          'req',
          '-new',
          ...KEY,
          '-keyout',
          `${name}.key`,
          '-out',
          `${name}.csr`,
          '-subj',
          `/CN=${commonName}`,
        ],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${name}.crt`,
          '-days',
          '2',
          '-extfile',
          `${name}.ext`,
        ],
        dir,
      );
      const certPath = join(dir, `${name}.crt`);
      const keyPath = join(dir, `${name}.key`);
      return {
        certFile: certPath,
        keyFile: keyPath,
        cert: readFileSync(certPath, 'utf8'),
        key: readFileSync(keyPath, 'utf8'),
      };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
