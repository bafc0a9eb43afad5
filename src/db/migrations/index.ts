import { readdirSync, readFileSync } from 'node:fs';

/** One migration file: its name (`NNNN_name.sql`) and its SQL template. */
export interface MigrationFile {
  file: string;
  text: string;
}

/**
 * The migration files, read from beside this module. The build replaces the compiled
 * module with one that holds their texts (scripts/copy-migrations.mjs), so that a service
 * bundled into one file (esbuild, rollup, webpack) needs no files of ours beside it; the
 * files ship too, for those who read or apply them by hand.
 */
export function migrationFiles(): MigrationFile[] {
  const dir = new URL('./', import.meta.url);
  return readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => ({ file, text: readFileSync(new URL(file, dir), 'utf8') }));
}
