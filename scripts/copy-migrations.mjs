// The build compiles TypeScript only. The migrations ship beside the compiled migrator as
// files, and inside it: the compiled dist/db/migrations/index.js, which reads the files
// at run time, is replaced with a module that holds their texts, so that a service bundled
// into one file (which carries no files of ours) still has them.
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';

const source = new URL('../src/db/migrations/', import.meta.url);
const target = new URL('../dist/db/migrations/', import.meta.url);
const files = readdirSync(source).filter((file) => file.endsWith('.sql'));
for (const file of files) cpSync(new URL(file, source), new URL(file, target));
const texts = files.map((file) => ({ file, text: readFileSync(new URL(file, source), 'utf8') }));
writeFileSync(
  new URL('index.js', target),
  `// Written by the build from src/db/migrations/*.sql (scripts/copy-migrations.mjs).
const files = ${JSON.stringify(texts, null, 2)};
/** The migration files, as shipped beside this module. */
export function migrationFiles() {
  return files.map((file) => ({ ...file }));
}
`,
);
