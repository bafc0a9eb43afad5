/**
 * The layering of src/, checked in `npm run lint`. From the top:
 *   cli → ops, nestjs, console → dispatcher, consumer, outbox (the producer), adapters → brokers, admin → db, events → common
 * A folder may import its own files and the folders below it, never one above or beside
 * it on its own floor; src/index.ts (the public entry) may import any library floor but
 * ops, nestjs and cli, which have entries of their own. Nothing in src/ imports the tools
 * (bench/) or the tests, the benchmarks import only the package's public API, and there
 * are no import cycles.
 */
const floors = {
  common: [],
  db: ['common'],
  events: ['common'],
  brokers: ['common', 'db', 'events'],
  admin: ['common', 'db', 'events'],
  dispatcher: ['common', 'db', 'events', 'brokers', 'admin'],
  consumer: ['common', 'db', 'events', 'brokers', 'admin'],
  outbox: ['common', 'db', 'events'],
  adapters: ['common', 'db'],
  ops: ['common', 'db', 'events', 'brokers', 'admin', 'dispatcher', 'consumer', 'outbox'],
  nestjs: ['common', 'db', 'events', 'brokers', 'dispatcher', 'outbox'],
  console: ['common', 'db', 'events', 'admin', 'dispatcher'],
};
const folders = [
  'common',
  'db',
  'events',
  'brokers',
  'admin',
  'dispatcher',
  'consumer',
  'outbox',
  'adapters',
  'ops',
  'nestjs',
  'console',
  'cli',
];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: the modules cannot be understood (or loaded) one at a time.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'library-imports-no-tools',
      comment: 'The published library must not depend on the benchmarks or the tests.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(bench|test)/' },
    },
    {
      name: 'tools-use-the-public-api',
      comment: 'The benchmarks import the package by its name, as a user would, never its sources.',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^src/' },
    },
    {
      name: 'entry-below-ops-and-cli',
      comment:
        'The public entry exports the library; ops, the Nest module and the CLI have entries of their own.',
      severity: 'error',
      from: { path: '^src/index\\.ts$' },
      to: { path: '^src/(ops|nestjs|console|cli)/' },
    },
    ...Object.entries(floors).map(([folder, below]) => ({
      name: `${folder}-imports-only-below`,
      comment: `src/${folder}/ may import ${below.length > 0 ? below.join(', ') : 'nothing else in src'}.`,
      severity: 'error',
      from: { path: `^src/${folder}/` },
      to: {
        path: `^src/(${folders.filter((f) => f !== folder && !below.includes(f)).join('|')}|index\\.ts$)`,
      },
    })),
    {
      name: 'only-known-folders',
      comment: 'A new folder in src/ needs its floor above (and in DEVELOPERS.md).',
      severity: 'error',
      from: { path: '^src/', pathNot: `^src/(${folders.join('|')})/|^src/index\\.ts$` },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
    includeOnly: '^(src|bench|test)/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.d.ts'],
    },
  },
};
