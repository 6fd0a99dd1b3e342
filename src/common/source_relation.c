/*-------------------------------------------------------------------------
 *
 * source_relation.c
 *	  Opening an agent's source relation by its oid (agents.source is a
 *	  regclass), for serving and for the training worker alike.
 *
 * The relation is locked before anything is looked up, so a DROP or an
 * ALTER waits for the reader instead of pulling the catalog rows from
 * under it; a relation dropped before, or swapped for another of the same
 * name (a new oid), is a clear error, never a NULL name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "source_relation.h"

/* The error for a source whose oid no longer names a relation. */
static void
dropped_source(Oid relid, const char *agent)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("source relation of agent \"%s\" no longer exists", agent),
			 errdetail("The agent reads the relation with oid %u, which was dropped; a relation created since under the same name is another relation.",
					   relid),
			 errhint("Drop the agent and create it again over an existing relation.")));
}

/*
 * Check that the source still exists, without locking it (retrain() checks
 * before a worker starts; the worker locks it when it reads).
 */
void
rl_source_relation_check(Oid relid, const char *agent)
{
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		dropped_source(relid, agent);
}

/*
 * Lock the source against DROP and ALTER for the rest of the transaction
 * and return its schema-qualified, quoted name.
 */
char *
rl_source_relation_lock(Oid relid, const char *agent)
{
	char	   *rel;
	char	   *nsp;

	LockRelationOid(relid, AccessShareLock);
	rel = get_rel_name(relid);
	nsp = rel != NULL ? get_namespace_name(get_rel_namespace(relid)) : NULL;
	if (rel == NULL || nsp == NULL)
	{
		UnlockRelationOid(relid, AccessShareLock);
		dropped_source(relid, agent);
	}
	return quote_qualified_identifier(nsp, rel);
}

/* Is a column type one that "kind" accepts (create_agent's lists)? */
static bool
type_accepted(Oid type, RlSourceColumnKind kind)
{
	switch (kind)
	{
		case RL_COLUMN_SYMBOL:
			return true;
		case RL_COLUMN_TIME:
			return type == TIMESTAMPTZOID || type == TIMESTAMPOID || type == DATEOID;
		case RL_COLUMN_PRICE:
			return type == NUMERICOID || type == FLOAT8OID || type == FLOAT4OID ||
				type == INT2OID || type == INT4OID || type == INT8OID;
		case RL_COLUMN_FEATURES:
			return type == FLOAT4ARRAYOID || type == FLOAT8ARRAYOID ||
				type == NUMERICARRAYOID;
	}
	return false;
}

/*
 * A column the agent reads must still exist with a type it can read: an
 * ALTER TABLE since create_agent() is an error naming the column.  The
 * caller holds rl_source_relation_lock's lock.
 */
void
rl_source_column_check(Oid relid, const char *agent, const char *column,
					   RlSourceColumnKind kind)
{
	static const char *const role[] = {"symbol", "time", "price", "features"};
	AttrNumber	att = get_attnum(relid, column);
	Oid			type;

	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of the source relation of agent \"%s\" no longer exists",
						column, agent),
				 errdetail("The agent reads its %s from that column of %s.",
						   role[kind], get_rel_name(relid))));
	type = get_atttype(relid, att);
	if (!type_accepted(type, kind))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of the source relation of agent \"%s\" has type %s, not a %s type",
						column, agent, format_type_be(type), role[kind]),
				 errdetail("The column was altered after the agent was created.")));
}
