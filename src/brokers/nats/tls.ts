/**
 * TLS of a NATS broker URL: `tls=true`, `ca_file` (the CA to trust), `cert_file` and
 * `key_file` (a client certificate). Read when the settings are read, never on import.
 */
import { createSecureContext } from 'node:tls';
import { ConfigError, errorMessage } from '../../common/errors.js';
import { registerSecret } from '../../common/secrets.js';
import { readSettingFile } from '../../common/setting-files.js';
import type { BrokerUrlParams } from '../url-params.js';

/** PEM texts for the client's `tls` option. Present: TLS is required. */
export interface NatsTls {
  /** `ca_file`: trusted instead of Node's CA store. */
  ca?: string;
  /** `cert_file` + `key_file`: the client certificate, for servers with `verify: true`. */
  cert?: string;
  key?: string;
}

/**
 * The URL's TLS settings; undefined leaves the choice to the client, which encrypts when
 * the server offers TLS but does not insist. A CA or client certificate means TLS is
 * required. A file that cannot be read, or does not hold what its parameter says, is a
 * ConfigError naming the parameter.
 */
export function readNatsTls(params: BrokerUrlParams): NatsTls | undefined {
  const { setting } = params;
  const asked = params.string('tls', '', /^(true|false)?$/, 'true or false');
  const file = (name: string) => {
    const path = params.string(name, '');
    return path === '' && !params.url.searchParams.has(name)
      ? undefined
      : readSettingFile(setting, name, path);
  };
  const ca = file('ca_file');
  const cert = file('cert_file');
  const key = file('key_file');
  const tls: NatsTls = {
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
  };
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(setting, 'cert_file and key_file go together: give both or neither');
  }
  const files = Object.keys(tls).length > 0;
  if (asked === 'false' && files) {
    throw new ConfigError(
      setting,
      'tls=false with ca_file, cert_file or key_file: the files need TLS; drop tls=false',
    );
  }
  if (!files) return asked === 'true' ? {} : undefined;
  if (key !== undefined) registerSecret(key.trim());
  checkPem(setting, tls);
  return tls;
}

/** Node's own reading of the PEM files, so a wrong file is named now, not at each connect. */
function checkPem(setting: string, tls: NatsTls): void {
  if (tls.ca !== undefined) {
    try {
      createSecureContext({ ca: tls.ca });
    } catch (error) {
      throw new ConfigError(setting, `ca_file: not a PEM certificate: ${errorMessage(error)}`);
    }
    if (!tls.ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(setting, 'ca_file: holds no PEM certificate');
    }
  }
  if (tls.cert !== undefined) {
    try {
      createSecureContext({ cert: tls.cert, key: tls.key });
    } catch (error) {
      // Node's message names the problem (no start line, key values mismatch), not the key.
      throw new ConfigError(
        setting,
        `cert_file / key_file: not a certificate and its private key: ${errorMessage(error)}`,
      );
    }
  }
}
