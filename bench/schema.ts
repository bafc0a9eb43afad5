/**
 * A schema name double-quoted for SQL. The benchmark makes its names itself
 * (`bench_<hex>`); quoting is only so they are never read as keywords.
 */
export function quoteSchema(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
