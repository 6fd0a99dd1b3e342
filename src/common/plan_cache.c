/*-------------------------------------------------------------------------
 *
 * plan_cache.c
 *	  SPI plans kept for the life of a backend, by query text (see
 *	  plan_cache.h).
 *
 * A kept plan is a plancache entry: PostgreSQL replans it when a relation
 * or function it uses changes, and checks privileges at every execution,
 * as the user current then.  Query texts here are built only from catalog
 * names (quoted) and schema-qualified functions and operators, so the same
 * text always means the same statement; the number of texts is bounded by
 * the agents' sources and a handful of statement shapes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "plan_cache.h"

typedef struct PlanEntry
{
	uint32		hash;			/* key: hash of the text, then the text */
	char	   *query;
	int			nargs;
	SPIPlanPtr	plan;
	struct PlanEntry *next;		/* same hash */
} PlanEntry;

static HTAB *plans = NULL;

/* The kept plan of a query, prepared (and kept) on first use. */
SPIPlanPtr
rl_cached_plan(const char *query, int nargs, Oid *argtypes)
{
	uint32		hash = hash_bytes((const unsigned char *) query, strlen(query));
	PlanEntry  *entry;
	bool		found;
	SPIPlanPtr	plan;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint32);
		ctl.entrysize = sizeof(PlanEntry);
		ctl.hcxt = TopMemoryContext;
		plans = hash_create("rl_mlops plans", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(plans, &hash, HASH_ENTER, &found);
	if (!found)
	{
		entry->query = NULL;
		entry->next = NULL;
	}
	for (PlanEntry *e = entry; e != NULL; e = e->next)
		if (e->query != NULL && e->nargs == nargs && strcmp(e->query, query) == 0)
			return e->plan;

	plan = SPI_prepare(query, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare a statement (%s): %s",
			 SPI_result_code_string(SPI_result), query);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a statement's plan: %s", query);
	if (entry->query != NULL)
	{
		PlanEntry  *more = MemoryContextAlloc(TopMemoryContext, sizeof(PlanEntry));

		*more = *entry;
		entry->next = more;
	}
	entry->query = MemoryContextStrdup(TopMemoryContext, query);
	entry->nargs = nargs;
	entry->plan = plan;
	return plan;
}
