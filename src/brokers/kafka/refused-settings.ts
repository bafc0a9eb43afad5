/**
 * Connection failures that the URL's settings cause, told apart from outages: the server's
 * certificate does not verify (`ca_file`, the host name), the server refuses our client
 * certificate or wants one (`cert_file`, `key_file`), SASL refuses the credentials or the
 * mechanism (the user, `password_file`, `sasl_mechanism`). Retrying cannot fix these, so
 * they become a ConfigError (the dispatcher stops, `run` exits 2) instead of an outage
 * retried for ever. So does a listener of the other kind: TLS asked of a plain-text one,
 * or the reverse. A server that is down, restarting or unreachable is none of them.
 */
import { ConfigError } from '../../common/errors.js';
import {
  clientCertificateRefusedCodes,
  untrustedCertificateCodes,
  wrongHostCodes,
} from '../tls-refusal.js';
import { errorTree } from './errors.js';
import type { KafkaSettings } from './settings.js';
import { probeListenerKind, probeTls } from './tls-probe.js';

/** How long the TLS probe may take: a refusal comes back at once. */
const PROBE_TIMEOUT_MS = 5000;

/**
 * The ConfigError (naming the URL's setting) for a connection failure the settings cause,
 * or undefined for an outage. With TLS, a failure that does not say why is asked again of
 * the first bootstrap server, whose refusal the client library may have swallowed
 * (tls-probe.ts).
 */
export async function refusedSettingsError(
  error: unknown,
  settings: KafkaSettings,
): Promise<ConfigError | undefined> {
  let refusal = refusedSettings(error, settings);
  const server = settings.bootstrapServers[0];
  const timeoutMs = Math.min(settings.timeoutMs, PROBE_TIMEOUT_MS);
  if (!refusal && settings.tls && server) {
    const probed = await probeTls(server, settings.tls, settings.clientId, timeoutMs);
    if (probed) refusal = refusedSettings(probed, settings);
  }
  if (!refusal && server) {
    const kind = await probeListenerKind(server, settings.tls, settings.clientId, timeoutMs);
    if (kind) refusal = otherListenerKind(kind, server);
  }
  if (!refusal) return undefined;
  return new ConfigError(settings.setting, `${settings.location}: ${refusal}`, { cause: error });
}

/** The sentence for a listener that speaks the other way than the URL asks. */
function otherListenerKind(kind: 'plain' | 'tls', server: string): string {
  return kind === 'plain'
    ? `TLS: ${server} answers in plain text, not TLS (give the port of an SSL or SASL_SSL listener, or drop tls=true, ca_file, cert_file and key_file)`
    : `${server} speaks TLS, and the URL asks for plain text (add tls=true, with ca_file when a private CA signs the certificate, or give the port of a PLAINTEXT or SASL_PLAINTEXT listener)`;
}

/** Answers with which the server refuses SASL. */
const saslRefusals = new Set([
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'ILLEGAL_SASL_STATE',
]);

interface Node {
  code?: string;
  /** OpenSSL's reason, on Node's TLS errors: `sslv3 alert bad certificate`. */
  reason?: string;
  apiId?: string;
  message?: string;
  serverErrorMessage?: string | null;
}

/**
 * What in the settings the server refuses, as a sentence naming the parameters to check;
 * undefined when `error` is not such a refusal (an outage, or something else).
 */
function refusedSettings(error: unknown, settings: KafkaSettings): string | undefined {
  const nodes = [...errorTree(error)] as Node[];
  const find = (codes: ReadonlySet<string>) =>
    nodes.find((node) => node.code && codes.has(node.code));

  const untrusted = find(untrustedCertificateCodes);
  if (untrusted) {
    const trusted = settings.tls?.ca
      ? 'the CA of ca_file'
      : "Node's default CAs (ca_file names the CA to trust)";
    return `TLS: the server's certificate does not verify against ${trusted}: ${untrusted.message}`;
  }
  const host = find(wrongHostCodes);
  if (host) {
    return `TLS: the server's certificate is not for the host connected to (use a name it carries): ${host.message}`;
  }
  const refused = find(clientCertificateRefusedCodes);
  if (refused) {
    const check = settings.tls?.cert
      ? 'check cert_file and key_file'
      : 'give one with cert_file and key_file';
    // OpenSSL's message is a line of internals; its reason is the alert in words.
    return `TLS: the server refuses the client certificate (${check}): ${refused.reason ?? refused.message}`;
  }

  const sasl = settings.sasl;
  if (!sasl) return undefined;
  const answer = nodes.find((node) => node.apiId && saslRefusals.has(node.apiId));
  switch (answer?.apiId) {
    case 'ILLEGAL_SASL_STATE':
      return 'SASL: this listener does not take SASL (a user in the URL means SASL: give the port of a SASL_SSL listener, or no user)';
    case 'UNSUPPORTED_SASL_MECHANISM':
      return `SASL: the server does not take the mechanism ${sasl.mechanism} (sasl_mechanism)`;
  }
  // The client's own verdict counts only when the server answered: a connection lost
  // during the exchange (a broker restarting) is wrapped the same way, and is an outage.
  const failed =
    answer?.apiId === 'SASL_AUTHENTICATION_FAILED' ||
    nodes.some((node) => node.code === 'PLT_KFK_AUTHENTICATION' && !lostConnection(node));
  if (!failed) return undefined;
  const said = answer?.serverErrorMessage ?? answer?.message;
  return `SASL ${sasl.mechanism} authentication of user "${sasl.username}" failed (check the user, the password or password_file, and sasl_mechanism)${said ? `: ${said}` : ''}`;
}

/** True when `node` was caused by a connection that broke or timed out. */
function lostConnection(node: Node): boolean {
  return [...errorTree(node)]
    .slice(1)
    .some((cause: Node) => cause.code === 'PLT_KFK_NETWORK' || /^E[A-Z]+$/.test(cause.code ?? ''));
}
