/*-------------------------------------------------------------------------
 *
 * agent_create.c
 *	  rl_mlops.create_agent(): register a trading agent over a price table
 *	  or view.
 *
 * The checks and the insert are the registry's (PL/pgSQL, run as the
 * extension owner), but the one step that reads the source relation,
 * counting the features when n_features is not given, runs as the role
 * that called create_agent, in a security-restricted operation whose
 * setting changes are undone (owner.c): a view or a row-level security
 * policy of another role never runs with the owner's rights, and a
 * security_invoker view reads only what the caller may read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "owner.h"
#include "source_relation.h"

PG_FUNCTION_INFO_V1(rl_create_agent);

#define CREATE_AGENT_ARGS 9

/*
 * The length of the first non-NULL array in the features column, read as
 * "reader"; NULL (*isnull) when there is none.
 */
static int32
count_features(const char *agent, Oid relid, const char *column, Oid reader,
			   bool *isnull)
{
	RlRequesterPart part;
	char	   *query;
	int32		n = 0;

	*isnull = true;
	part = rl_begin_as_requester(reader);
	query = psprintf("SELECT pg_catalog.array_length(%s, 1) FROM %s WHERE %s IS NOT NULL LIMIT 1",
					 quote_identifier(column),
					 rl_source_relation_lock(relid, agent),
					 quote_identifier(column));
	if (SPI_execute(query, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the features of the source");
	if (SPI_processed == 1)
		n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, isnull));
	rl_end_as_requester(part);
	return n;
}

/* Is this index a b-tree (one that serves "latest rows of a symbol")? */
static bool
index_is_btree(Oid indexrelid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexrelid));
	bool		btree;

	if (!HeapTupleIsValid(tup))
		return false;
	btree = ((Form_pg_class) GETSTRUCT(tup))->relam == BTREE_AM_OID;
	ReleaseSysCache(tup);
	return btree;
}

/*
 * decide() and monitor() read a symbol's latest rows: without a b-tree
 * index leading with (symbol, time) every call scans the source (about
 * 100 ms a call on 2 million rows, under 1 ms with it).  Say so, with the
 * statement to run; for a view, say that the table it reads needs one.
 * Reads the catalogs only.
 */
static void
advise_index(Oid relid, const char *symbol_column, const char *time_column)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	AttrNumber	sym = get_attnum(relid, symbol_column);
	AttrNumber	tim = get_attnum(relid, time_column);
	char	   *name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	bool		found = false;
	List	   *indexes;
	ListCell   *lc;

	if (rel->rd_rel->relkind == RELKIND_VIEW)
	{
		relation_close(rel, AccessShareLock);
		ereport(NOTICE,
				(errmsg("source %s is a view: decide() and monitor() are fast only if the table it reads has an index leading with its symbol and time columns",
						name),
				 errhint("For example: CREATE INDEX ON <table> (<symbol column>, <time column>);")));
		return;
	}
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index ix;

		if (!HeapTupleIsValid(tup))
			continue;
		ix = (Form_pg_index) GETSTRUCT(tup);
		if (ix->indnkeyatts >= 2 && ix->indkey.values[0] == sym && ix->indkey.values[1] == tim &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			index_is_btree(ix->indexrelid))
			found = true;
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	relation_close(rel, AccessShareLock);
	if (!found)
		ereport(NOTICE,
				(errmsg("source %s has no index leading with (%s, %s)", name,
						symbol_column, time_column),
				 errdetail("decide() and monitor() read a symbol's latest rows: without such an index every call scans the whole source."),
				 errhint("CREATE INDEX ON %s (%s, %s);", name, quote_identifier(symbol_column),
						 quote_identifier(time_column))));
}

/* Run a registry function of the arguments as the owner; its result row. */
static HeapTuple
owner_call(const char *sql, int nargs, Oid *types, Datum *values,
		   const char *nulls, TupleDesc *desc)
{
	RlSavedUser saved = rl_become_owner();
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1);

	rl_restore_user(saved);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "registry statement failed: %s", sql);
	*desc = SPI_tuptable->tupdesc;
	return SPI_tuptable->vals[0];
}

/*
 * create_agent(name, source, symbol_column, time_column, price_column,
 * features_column, n_features, window_size, hidden_size)
 */
Datum
rl_create_agent(PG_FUNCTION_ARGS)
{
	Oid			reader = GetUserId();
	Oid			types[CREATE_AGENT_ARGS + 1] = {TEXTOID, REGCLASSOID, NAMEOID, NAMEOID,
	NAMEOID, NAMEOID, INT4OID, INT4OID, INT4OID, REGROLEOID};
	Datum		values[CREATE_AGENT_ARGS + 1];
	char		nulls[CREATE_AGENT_ARGS + 1];
	TupleDesc	desc;
	HeapTuple	row;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("agent name must not be null")));
	for (int i = 0; i < CREATE_AGENT_ARGS; i++)
	{
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	values[CREATE_AGENT_ARGS] = ObjectIdGetDatum(reader);
	nulls[CREATE_AGENT_ARGS] = ' ';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* source, reader, symbol, time, price, features, n_features */
	{
		Oid			ctypes[7] = {REGCLASSOID, REGROLEOID, NAMEOID, NAMEOID, NAMEOID, NAMEOID, INT4OID};
		Datum		cvalues[7] = {values[1], values[9], values[2], values[3], values[4], values[5], values[6]};
		char		cnulls[7] = {nulls[1], ' ', nulls[2], nulls[3], nulls[4], nulls[5], nulls[6]};

		(void) owner_call("SELECT rl_mlops._check_agent_source($1, $2, $3, $4, $5, $6, $7)",
						  7, ctypes, cvalues, cnulls, &desc);
	}

	if (!PG_ARGISNULL(5) && PG_ARGISNULL(6))
	{
		bool		isnull;
		int32		n = count_features(text_to_cstring(PG_GETARG_TEXT_PP(0)),
									   PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(5)),
									   reader, &isnull);

		values[6] = Int32GetDatum(n);
		nulls[6] = isnull ? 'n' : ' ';
	}

	/*
	 * The new agent's settings as jsonb, readable in psql unlike a row; as
	 * the row itself while the 0.1.0 declaration is installed (the library
	 * is shared by both versions until ALTER EXTENSION ... UPDATE).
	 */
	if (get_fn_expr_rettype(fcinfo->flinfo) == JSONBOID)
	{
		bool		isnull;

		row = owner_call("SELECT a.symbol_column, a.time_column, pg_catalog.to_jsonb(a)"
						 "  FROM rl_mlops._insert_agent($1, $2, $3, $4, $5, $6, $7, $8, $9) a",
						 CREATE_AGENT_ARGS, types, values, nulls, &desc);
		result = SPI_datumTransfer(SPI_getbinval(row, desc, 3, &isnull), false, -1);
		advise_index(PG_GETARG_OID(1), SPI_getvalue(row, desc, 1),
					 SPI_getvalue(row, desc, 2));
	}
	else
	{
		row = owner_call("SELECT * FROM rl_mlops._insert_agent($1, $2, $3, $4, $5, $6, $7, $8, $9)",
						 CREATE_AGENT_ARGS, types, values, nulls, &desc);
		result = PointerGetDatum(SPI_returntuple(row, desc));
		advise_index(PG_GETARG_OID(1),
					 SPI_getvalue(row, desc, SPI_fnumber(desc, "symbol_column")),
					 SPI_getvalue(row, desc, SPI_fnumber(desc, "time_column")));
	}
	SPI_finish();
	PG_RETURN_DATUM(result);
}
