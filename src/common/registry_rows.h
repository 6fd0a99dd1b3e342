/*-------------------------------------------------------------------------
 *
 * registry_rows.h
 *	  Reading rows of the registry tables (rl_mlops.agents, rl_mlops.models)
 *	  from C by index scans, by column name: nothing to parse or plan, and
 *	  no name resolution that a search_path could change.
 *
 * Include postgres.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_REGISTRY_ROWS_H
#define RL_REGISTRY_ROWS_H

#include "access/htup.h"
#include "access/skey.h"
#include "utils/relcache.h"

extern Oid	rl_registry_relid(const char *name);
extern bool rl_registry_has_column(Relation rel, const char *name);
extern Datum rl_registry_column(Relation rel, HeapTuple tup, const char *name,
								bool *isnull);
extern char *rl_registry_column_string(Relation rel, HeapTuple tup,
									   const char *name);
extern void rl_registry_text_key(ScanKey key, Relation rel, const char *name,
								 const char *value);
extern void rl_unknown_agent(const char *agent) pg_attribute_noreturn();

#endif							/* RL_REGISTRY_ROWS_H */
