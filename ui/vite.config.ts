/**
 * The console page: Preact through Vite's own JSX transform (no Babel plugin), built into
 * dist/ui/ as static files that the console server sends under a strict CSP (no inline
 * scripts or styles, nothing from another origin).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: './',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: here('../dist/ui'),
    emptyOutDir: true,
    // The polyfill is only for browsers without modulepreload; every supported one has it.
    modulePreload: { polyfill: false },
    // Inlined assets would be data: URLs; keep every file a file of its own.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
  logLevel: 'warn',
});
