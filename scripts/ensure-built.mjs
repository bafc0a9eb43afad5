// Builds dist/ when it is missing or older than what it is built from, so `npm start`
// and the checks that read dist/ work straight after `npm ci`. The package has no
// install-time script: npm would list it among the install scripts users must allow.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const outputs = ['dist/cli/main.js', 'dist/ui/index.html'].map((file) => join(root, file));
const inputs = ['src', 'ui', 'package.json', 'tsconfig.json', 'tsconfig.build.json'];

/** The newest modification time under `path` (a file or a folder), in ms. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = 0;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

const built = outputs.every((file) => existsSync(file))
  ? Math.min(...outputs.map((file) => statSync(file).mtimeMs))
  : 0;
const sources = Math.max(...inputs.map((input) => newest(join(root, input))));
if (built < sources) {
  process.stderr.write('building dist/ (npm run build) …\n');
  const result = spawnSync('npm', ['run', 'build', '--silent'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  process.exit(result.status ?? 1);
}
