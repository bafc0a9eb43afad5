import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { redactUrl } from '../common/url.js';
import { deadCommand, inboxCommand, purgeCommand } from './commands/dead.js';
import { demoCommand } from './commands/demo.js';
import { migrateCommand } from './commands/migrate.js';
import { runCommand } from './commands/run.js';
import { statusCommand } from './commands/status.js';
import { uiCommand } from './commands/ui.js';
import { exitCodes, settingsFromEnvironment } from './execute.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function program(): Command {
  const root = new Command('edupulse-outbox')
    .description(
      'Transactional outbox for PostgreSQL: publishes the events your transactions wrote.',
    )
    .version(version())
    .addHelpText(
      'after',
      `
Settings come from flags, then the environment (DATABASE_URL, OUTBOX_BROKER_URL, OUTBOX_SCHEMA;
run --help and ui --help name the OUTBOX_METRICS_* and OUTBOX_UI_* ones), then defaults.
Run \`edupulse-outbox <command> --help\` for a command's settings.`,
    )
    .addCommand(migrateCommand())
    .addCommand(runCommand())
    .addCommand(statusCommand())
    .addCommand(deadCommand())
    .addCommand(purgeCommand())
    .addCommand(inboxCommand())
    .addCommand(uiCommand())
    .addCommand(demoCommand());
  // Usage errors (unknown flag, missing value) exit 2 like any other bad setting. They
  // quote what was typed, which may hold a secret: an unknown `--flag=value` is named
  // without its value (a misspelt --metrics-token=…, run's --broker=… given to status),
  // and a URL quoted as an unknown command or a value shows no credentials.
  const configure = (command: Command) => {
    // One line, as every other refusal: commander's own second line ("(Did you mean
    // --port?)") joined to it, and the pointer to --help after both.
    command.exitOverride().configureOutput({
      outputError: (text, write) =>
        write(
          `edupulse-outbox: ${withoutCredentials(
            text
              .replace(/^error: /, '')
              .trim()
              .replace(/\s*\n\s*/g, ' '),
          )} (add --help for the list of settings)\n`,
        ),
    });
    const named = command as unknown as { unknownOption(flag: string): void };
    const unknownOption = named.unknownOption.bind(command);
    named.unknownOption = (flag) => unknownOption(flag.split('=')[0] ?? flag);
    for (const sub of command.commands) configure(sub);
  };
  configure(root);
  // A bad value read from the environment is named by its variable too.
  root.hook('preAction', (_, action) => {
    const read = new Map<string, string>();
    for (const option of action.options) {
      const name = option.attributeName();
      if (option.envVar && action.getOptionValueSource(name) === 'env') {
        read.set(option.long?.replace(/^--/, '') ?? name, option.envVar);
      }
    }
    settingsFromEnvironment(read);
  });
  return root;
}

/** `text` with every quoted URL in it redacted (user info and secret parameters masked). */
function withoutCredentials(text: string): string {
  return text.replace(/'([^'\s]*:\/\/[^'\s]*)'/g, (_, url: string) => `'${redactUrl(url)}'`);
}

/** Parses argv, runs the command, and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const root = program();
  // Commander answers `<unknown> --help` with the general help and exit 0, as if the
  // command existed, and `help <unknown>` with the general help alone: without the help
  // flags or word it says the command is unknown (exit 2).
  const known = (name: string) =>
    name === 'help' || root.commands.some((c) => c.name() === name || c.aliases().includes(name));
  const words =
    argv[0] === 'help' && argv[1] !== undefined && !known(argv[1]) ? argv.slice(1) : argv;
  const [first] = words;
  const args =
    first !== undefined && !first.startsWith('-') && !known(first)
      ? words.filter((arg) => arg !== '--help' && arg !== '-h')
      : words;
  try {
    await root.parseAsync([...args], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors with Commander's code 1.
      return error.exitCode === 0 ? exitCodes.ok : exitCodes.badSetting;
    }
    throw error;
  }
}

// Run as a script itself (`node dist/cli/main.js run …`, a supervisor pointed at the
// compiled file), this module would only define main() and exit 0 having done nothing:
// say where the CLI is instead, and exit 2.
if (
  process.argv[1] !== undefined &&
  realpathOf(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  process.stderr.write(
    'edupulse-outbox: dist/cli/main.js is not the command; run bin/edupulse-outbox (`npx edupulse-outbox`) with the same arguments\n',
  );
  process.exitCode = exitCodes.badSetting;
}

function realpathOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
