/**
 * Files a connection URL names (`password_file`, a CA, a client certificate): read once,
 * when the URL's settings are read, so that a path that cannot be read stops the command
 * at start with a ConfigError naming the parameter, not at the first connection.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from './errors.js';
import { registerSecret } from './secrets.js';

/** The content of the file the URL parameter `name` of `setting` names. */
export function readSettingFile(setting: string, name: string, path: string): string {
  if (path === '') throw new ConfigError(setting, `${name} is empty (expected a file path)`);
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(setting, `${name}: cannot read ${path}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

/**
 * The password a `password_file` parameter names: the file's content with one trailing
 * newline dropped (as `echo` and most secret stores write it), remembered as a secret so
 * that nothing printed shows it. An empty one is refused: it is a mistake, not a password.
 */
export function readPasswordFile(setting: string, name: string, path: string): string {
  const password = readSettingFile(setting, name, path).replace(/\r?\n$/, '');
  if (password === '') throw new ConfigError(setting, `${name}: ${path} is empty`);
  registerSecret(password);
  return password;
}
