/**
 * Files a connection URL names (`password_file`, a CA, a client key…), read once when the
 * settings are read, so that a missing file is a ConfigError naming its parameter at start
 * rather than a connection failure retried for ever.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { ConfigError, errorMessage } from './errors.js';
import { registerSecret } from './secrets.js';

/** `name: ` before a message about the file, unless the setting is the file itself. */
const namedAs = (setting: string, name: string) => (name === setting ? '' : `${name}: `);

/**
 * The file's text, or a ConfigError naming `setting` and the parameter `name` (once, when
 * the file is a setting of its own: `ui-token-file: cannot read …`).
 */
export function readSettingFile(setting: string, name: string, path: string): string {
  const named = namedAs(setting, name);
  if (path === '') {
    const what = name === setting ? 'the path' : name;
    throw new ConfigError(setting, `${what} is empty (expected a file path)`);
  }
  let text: string | undefined;
  try {
    text = readAtMost(path, MAX_SETTING_FILE_BYTES);
  } catch (error) {
    throw new ConfigError(setting, `${named}cannot read ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (text === undefined) {
    throw new ConfigError(
      setting,
      `${named}${path} holds more than ${MAX_SETTING_FILE_BYTES / 2 ** 20} MiB, far more than a password, a key or a CA bundle (is it the right file?)`,
    );
  }
  return text;
}

/**
 * The most a setting file is read to. A CA bundle of every public root is about 200 KB;
 * a device that never ends (`/dev/zero`, `/dev/urandom`) would otherwise be read until
 * memory runs out.
 */
const MAX_SETTING_FILE_BYTES = 16 * 2 ** 20;

/** The file's text, or undefined when it holds more than `limit` bytes. */
function readAtMost(path: string, limit: number): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      total += read;
      if (total > limit) return undefined;
      chunks.push(Buffer.from(buffer.subarray(0, read)));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * A secret kept in a file of its own (a password, a token): the file's text without one
 * trailing newline, remembered as a secret so that nothing printed shows it. An empty
 * file is a ConfigError.
 */
export function readSecretFile(setting: string, name: string, path: string): string {
  const secret = readSettingFile(setting, name, path).replace(/\r?\n$/, '');
  if (secret === '') {
    throw new ConfigError(setting, `${namedAs(setting, name)}${path} is empty`);
  }
  registerSecret(secret);
  return secret;
}
