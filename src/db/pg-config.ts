/**
 * A postgres:// URL as node-postgres connection settings, read the way libpq (psql) reads
 * it, so a URL that works with psql means the same here:
 *
 * - `sslmode`: `disable`, `require` (encrypted, server not verified — unless `sslrootcert`
 *   is given, then as `verify-ca`), `verify-ca` (the server's certificate chains to the CA),
 *   `verify-full` (and names the host). `allow` and `prefer` are refused: they would fall
 *   back to plain text, which node-postgres cannot do and an operator should choose in
 *   words (`disable`). No `sslmode` is plain text, as node-postgres has it.
 * - `sslrootcert` (CA file), `sslcert` and `sslkey` (client certificate): file paths, read
 *   and checked as PEM when the URL is read; `sslcert` and `sslkey` go together (there is
 *   no default key file). A CA file without `sslmode` means `verify-full`.
 * - `password_file`: the password is the file's content (one trailing newline dropped),
 *   so it need not be written into the URL or the environment. It is remembered as a
 *   secret: nothing printed shows it.
 * - Several hosts (`postgres://a:5432,b:5432/db`) with `target_session_attrs` `any` (the
 *   default: the first that accepts a connection), `read-write` or `primary` (the first
 *   that takes writes), tried in order for every new connection — as libpq does, so a URL
 *   listing a primary and its standby follows a failover (pg-hosts.ts).
 * - `pooler=session`: the dispatcher may run through this URL although it goes through a
 *   connection pooler, because the pooler pins one server session to each connection
 *   (PgBouncer's `pool_mode = session`). See checkSessionIsDirect.
 * - `connect_timeout`: whole seconds, as node-postgres's `connectionTimeoutMillis`.
 * - Besides these, only what node-postgres reads (PG_PARAMETERS): it ignores anything else
 *   without a word, so any other parameter is refused, naming it.
 *
 * Files are read here, once; a file that cannot be read is a ConfigError naming the
 * parameter, as is an sslmode that is not one of the above.
 */
import type pg from 'pg';
import { parse, toClientConfig } from 'pg-connection-string';
import { ConfigError } from '../common/errors.js';
import { closestName } from '../common/options.js';
import { readSecretFile } from '../common/setting-files.js';
import { readPemFiles } from '../common/tls-pem.js';
import { assertParametersOnce, hostList, parseUrl } from '../common/url.js';

const SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
const FILE_PARAMETERS = ['sslrootcert', 'sslcert', 'sslkey', 'password_file'] as const;
const POOLER_MODES = ['none', 'session'] as const;
const TARGET_SESSION_ATTRS = ['any', 'read-write', 'primary'] as const;

export interface PgHost {
  host: string;
  port: number;
}

export interface PgConnectionSettings {
  /** For pg.Client and pg.Pool: with the first host; see `hosts`. */
  config: pg.ClientConfig;
  /** Every host of the URL in order (libpq's `host1:port1,host2:port2`). */
  hosts: PgHost[];
  /** `target_session_attrs=read-write` (or `primary`): only a server that takes writes. */
  readWrite: boolean;
  /** `pooler=session` was given: a pooler that pins sessions stands between us and the server. */
  sessionPooler: boolean;
}

/**
 * Connection settings of `url` (see above). `setting` names the URL's setting in errors
 * (`database-url` in the CLI).
 */
export function pgConnectionSettings(
  url: string | undefined,
  setting: string,
): PgConnectionSettings {
  if (url === undefined || url === '') {
    throw new ConfigError(setting, 'no URL given (expected postgres://user@host/database)');
  }
  const parsed = parseUrl(url);
  // Not quoted: it may hold a password.
  if (!parsed) {
    throw new ConfigError(setting, 'is not a valid URL (expected postgres://user@host/database)');
  }
  const params = parsed.searchParams;
  assertParametersOnce(parsed, setting);
  const hosts = serverList(setting, parsed);
  const targetSessionAttrs = params.get('target_session_attrs') ?? 'any';
  if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(targetSessionAttrs)) {
    throw new ConfigError(
      setting,
      `target_session_attrs="${targetSessionAttrs}" is not supported (use one of: ${TARGET_SESSION_ATTRS.join(', ')}; the outbox writes, so a standby will not do)`,
    );
  }
  params.delete('target_session_attrs');
  // The parser reads one host: the first; the connections choose among them (pg-hosts.ts).
  const [first] = hosts as [PgHost, ...PgHost[]];
  parsed.host = `${first.host.includes(':') ? `[${first.host}]` : first.host}:${first.port}`;

  const sslmode = params.get('sslmode');
  if (sslmode !== null && !(SSL_MODES as readonly string[]).includes(sslmode)) {
    const hint =
      sslmode === 'prefer' || sslmode === 'allow'
        ? ' — it would fall back to plain text; say require (encrypted, not verified), verify-ca or verify-full, or disable'
        : '';
    throw new ConfigError(
      setting,
      `sslmode="${sslmode}" is not supported (use one of: ${SSL_MODES.join(', ')})${hint}`,
    );
  }
  const pooler = params.get('pooler') ?? 'none';
  if (!(POOLER_MODES as readonly string[]).includes(pooler)) {
    throw new ConfigError(
      setting,
      `pooler="${pooler}" is not valid (use session for a pooler in session mode, or leave it out)`,
    );
  }
  // Ours: sslmode is read here with libpq's meaning, whatever node-postgres's own flag says.
  params.delete('uselibpqcompat');
  params.delete('pooler');

  const paths: Partial<Record<(typeof FILE_PARAMETERS)[number], string>> = {};
  for (const name of FILE_PARAMETERS) {
    const path = params.get(name);
    if (path === null) continue;
    params.delete(name);
    paths[name] = path;
  }
  if (paths.password_file !== undefined && (parsed.password || params.has('password'))) {
    throw new ConfigError(setting, 'password_file and a password are both given: keep one');
  }
  // node-postgres lets the parameter win, and with several hosts ignores host and port:
  // the URL would say one thing and connect as another.
  for (const [name, inUrl] of [
    ['user', parsed.username],
    ['password', parsed.password],
    ['host', parsed.hostname],
    ['port', parsed.port],
  ] as const) {
    if (inUrl && params.has(name)) {
      throw new ConfigError(
        setting,
        `the ${name} is given twice, in the URL and as the parameter ${name}=: keep one`,
      );
    }
  }
  const password =
    paths.password_file === undefined
      ? undefined
      : readSecretFile(setting, 'password_file', paths.password_file);
  // Checked as PEM now, as a broker's TLS files are: a file that is not one, or a
  // certificate without its key, would otherwise fail every connection.
  const pem = readPemFiles(
    setting,
    { ca: paths.sslrootcert, cert: paths.sslcert, key: paths.sslkey },
    { ca: 'sslrootcert', cert: 'sslcert', key: 'sslkey' },
  );
  const files = { sslrootcert: pem.ca, sslcert: pem.cert, sslkey: pem.key };

  // The files were read above (so a missing one names its parameter), and sslmode is
  // applied below: the parser gets neither, and reads the rest of the URL.
  params.delete('sslmode');
  // libpq's connect_timeout (seconds) is node-postgres's connectionTimeoutMillis.
  const connectTimeout = params.get('connect_timeout');
  params.delete('connect_timeout');
  const timeoutMs = connectTimeout === null ? undefined : connectTimeoutMs(setting, connectTimeout);
  assertKnownParameters(setting, params);
  const options = parse(parsed.href);
  if (sslmode === 'disable') {
    options.ssl = false;
  } else if (sslmode !== null || files.sslrootcert !== undefined || files.sslcert !== undefined) {
    const ssl: SslOptions = {};
    if (files.sslrootcert !== undefined) ssl.ca = files.sslrootcert;
    if (files.sslcert !== undefined) ssl.cert = files.sslcert;
    if (files.sslkey !== undefined) ssl.key = files.sslkey;
    applySslMode(setting, ssl, sslmode ?? 'verify-full', files.sslrootcert !== undefined);
    options.ssl = ssl;
  }
  const config = toClientConfig(options);
  if (password !== undefined) config.password = password;
  if (timeoutMs !== undefined) config.connectionTimeoutMillis = timeoutMs;
  return {
    config,
    sessionPooler: pooler === 'session',
    hosts,
    readWrite: targetSessionAttrs !== 'any',
  };
}

/**
 * What node-postgres reads from the rest of a URL; it ignores anything else without a
 * word, so a misspelt `sslmode` would mean plain text. Ours (read above) are gone by now.
 */
const PG_PARAMETERS = [
  'application_name',
  'fallback_application_name',
  'options',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'query_timeout',
  'sslnegotiation',
  'user',
  'password',
  'host',
  'port',
] as const;

/** The parameters read here before node-postgres sees the URL. */
const OWN_PARAMETERS = [
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'password_file',
  'target_session_attrs',
  'pooler',
  'connect_timeout',
] as const;

/** Refuses a parameter nothing reads: a typo, or a libpq one node-postgres lacks. */
function assertKnownParameters(setting: string, params: URLSearchParams): void {
  for (const name of new Set(params.keys())) {
    if ((PG_PARAMETERS as readonly string[]).includes(name)) continue;
    const meant = closestName(name, [...OWN_PARAMETERS, ...PG_PARAMETERS]);
    // Not quoted beyond its name: the value may be a secret.
    throw new ConfigError(
      setting,
      `the URL parameter "${name.slice(0, 64)}" is not one this connection reads${meant ? ` (did you mean "${meant}"?)` : ''}; it takes ${OWN_PARAMETERS.join(', ')}, ${PG_PARAMETERS.slice(0, 9).join(', ')} and node-postgres's few others`,
    );
  }
}

/** libpq's connect_timeout: whole seconds. */
function connectTimeoutMs(setting: string, raw: string): number {
  if (!/^\d{1,6}$/.test(raw)) {
    throw new ConfigError(
      setting,
      `connect_timeout="${raw.slice(0, 20)}" is not a whole number of seconds`,
    );
  }
  return Number(raw) * 1000;
}

/** The URL's hosts (`a:5432,b:5433`), each with its port or 5432. */
function serverList(setting: string, url: URL): PgHost[] {
  return hostList(url).map((server) => {
    const match = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(server);
    const host = match?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
    const port = match?.[2] ? Number(match[2]) : 5432;
    if (!match || !host || !(port >= 1 && port <= 65535)) {
      throw new ConfigError(setting, `"${server}" is not a host with an optional port (host:5432)`);
    }
    return { host, port };
  });
}

interface SslOptions {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  checkServerIdentity?: () => undefined;
}

/** libpq's meaning of each mode, on Node's TLS options. */
function applySslMode(setting: string, ssl: SslOptions, mode: string, hasCa: boolean): void {
  // require with a CA file is verify-ca (libpq); without, encryption only.
  const effective = mode === 'require' && hasCa ? 'verify-ca' : mode;
  if (effective === 'require') ssl.rejectUnauthorized = false;
  if (effective === 'verify-ca') {
    if (!hasCa) {
      throw new ConfigError(
        setting,
        'sslmode=verify-ca needs sslrootcert (the CA file): with the public CAs, anyone holding a certificate from them would pass; use verify-full for those',
      );
    }
    ssl.checkServerIdentity = () => undefined;
  }
}
