/**
 * Files a connection URL names (`password_file`, a CA, a client key…), read once when the
 * settings are read, so that a missing file is a ConfigError naming its parameter at start
 * rather than a connection failure retried for ever.
 */
import { readFileSync } from 'node:fs';
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
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(setting, `${named}cannot read ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
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
