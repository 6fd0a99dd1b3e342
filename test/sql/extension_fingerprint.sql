-- One line per definition the rl_mlops extension owns: functions (full
-- definition and privileges), relations (columns, defaults, constraints,
-- indexes, view definitions, privileges), types and event triggers.  Two
-- databases with the same lines have the same extension, whatever path
-- (fresh install or upgrades) brought each there.
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'rl_mlops'),
members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
       AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, 'default') || E'\n'
       || pg_catalog.pg_get_functiondef(p.oid)
  FROM members m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
 WHERE p.prokind <> 'a'
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, 'default')
       || coalesce(E'\n' || pg_catalog.pg_get_viewdef(c.oid) , '')
  FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' #' || a.attnum || ' '
       || pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
       || coalesce(' generated ' || nullif(a.attgenerated::text, ''), '')
  FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid)
  FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
  JOIN pg_catalog.pg_constraint co ON co.conrelid = c.oid
UNION ALL
SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
  JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
UNION ALL
SELECT 'type ' || t.oid::regtype
  FROM members m JOIN pg_catalog.pg_type t ON m.classid = 'pg_catalog.pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc || ' ' || e.evttags::text
  FROM members m JOIN pg_catalog.pg_event_trigger e ON m.classid = 'pg_catalog.pg_event_trigger'::regclass AND e.oid = m.objid
UNION ALL
SELECT 'config dump ' || pg_catalog.array_to_string(e.extconfig::regclass[], ', ')
  FROM pg_catalog.pg_extension e WHERE e.extname = 'rl_mlops'
ORDER BY 1;
