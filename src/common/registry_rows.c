/*-------------------------------------------------------------------------
 *
 * registry_rows.c
 *	  Reading rows of the registry tables from C (see registry_rows.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "registry_rows.h"

/* A registry relation (table or index) of schema rl_mlops, by name. */
Oid
rl_registry_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("rl_mlops", false));

	if (!OidIsValid(relid))
		elog(ERROR, "relation rl_mlops.%s does not exist", name);
	return relid;
}

/* Attribute number of a registry table's column, or InvalidAttrNumber. */
static AttrNumber
find_column(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/* Attribute number of a registry table's column, by name. */
static AttrNumber
column_number(Relation rel, const char *name)
{
	AttrNumber	att = find_column(rel, name);

	if (att == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of relation rl_mlops.%s does not exist",
			 name, RelationGetRelationName(rel));
	return att;
}

/*
 * Does a registry table have this column?  The library of a new version
 * runs over the old version's tables until ALTER EXTENSION UPDATE.
 */
bool
rl_registry_has_column(Relation rel, const char *name)
{
	return find_column(rel, name) != InvalidAttrNumber;
}

/* A column of a registry row by name; NULL only where the table allows it. */
Datum
rl_registry_column(Relation rel, HeapTuple tup, const char *name, bool *isnull)
{
	return heap_getattr(tup, column_number(rel, name), RelationGetDescr(rel),
						isnull);
}

/* A text or name column as a C string in the current context, or NULL. */
char *
rl_registry_column_string(Relation rel, HeapTuple tup, const char *name)
{
	AttrNumber	att = column_number(rel, name);
	bool		isnull;
	Datum		d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

	if (isnull)
		return NULL;
	if (TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid == NAMEOID)
		return pstrdup(NameStr(*DatumGetName(d)));
	return TextDatumGetCString(d);
}

/* Equality on a text column, in the column's collation (its index's). */
void
rl_registry_text_key(ScanKey key, Relation rel, const char *name, const char *value)
{
	AttrNumber	att = column_number(rel, name);
	Oid			collation = TupleDescAttr(RelationGetDescr(rel), att - 1)->attcollation;

	ScanKeyEntryInitialize(key, 0, att, BTEqualStrategyNumber, InvalidOid,
						   collation, F_TEXTEQ, CStringGetTextDatum(value));
}

/* The same error wherever an agent name matches no row. */
void
rl_unknown_agent(const char *agent)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("agent \"%s\" does not exist", agent),
			 errhint("Create it with rl_mlops.create_agent().")));
}
