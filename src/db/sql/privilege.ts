/** What a role lacks of the privileges a part of the library needs (db/privileges.ts). */
export interface PrivilegeStatements {
  /**
   * $1 the schema's name, $2 a JSON array of {kind: schema | table | sequence, name,
   * privilege}: the ones the current role lacks, and (kind `row security`) the tables
   * row-level security filters for it, each with the role's name. Objects that do not
   * exist are left to the schema check; a missing schema gives no rows.
   */
  privilegeMissing: string;
  /** The current role's name (`role`). */
  privilegeRole: string;
  /** $1 the schema's name: the current role (`role`) and the schema's owner (`owner`, NULL when absent). */
  privilegeSchemaOwner: string;
}

export function privilegeStatements(): PrivilegeStatements {
  return {
    // By oid, from the catalogs: a role without USAGE on the schema gets an answer too,
    // where to_regclass would itself be refused.
    privilegeMissing: `WITH need AS (
  SELECT r.kind, r.name, r.privilege, r.ord, n.oid AS nsp, c.oid AS rel
  FROM ROWS FROM (
    json_to_recordset($2::text::json) AS (kind text, name text, privilege text)
  ) WITH ORDINALITY AS r(kind, name, privilege, ord)
  JOIN pg_catalog.pg_namespace n ON n.nspname = $1
  LEFT JOIN pg_catalog.pg_class c
    ON r.kind <> 'schema' AND c.relnamespace = n.oid AND c.relname = r.name
)
SELECT role, kind, name, privilege FROM (
  SELECT current_user::text AS role, kind, name, privilege, ord FROM need
  WHERE CASE kind
    WHEN 'schema' THEN NOT pg_catalog.has_schema_privilege(nsp, privilege)
    WHEN 'table' THEN rel IS NOT NULL AND NOT pg_catalog.has_table_privilege(rel, privilege)
    WHEN 'sequence' THEN rel IS NOT NULL AND NOT pg_catalog.has_sequence_privilege(rel, privilege)
  END
  UNION ALL
  SELECT current_user::text, 'row security', name, '', min(ord) FROM need
  WHERE kind = 'table' AND rel IS NOT NULL AND pg_catalog.row_security_active(rel)
  GROUP BY name
) found
-- In the order asked, so that a message names the grants the same way every time.
ORDER BY ord`,
    privilegeRole: 'SELECT current_user::text AS role',
    privilegeSchemaOwner: `SELECT current_user::text AS role,
  (SELECT nspowner::regrole::text FROM pg_catalog.pg_namespace WHERE nspname = $1) AS owner`,
  };
}
