/*-------------------------------------------------------------------------
 *
 * serve_cache.c
 *	  The serving cache: the active model of each agent, parsed once per
 *	  backend and dropped when a deployment commits (ARCHITECTURE.md,
 *	  "Serving").
 *
 * Cache: per backend, one entry per agent in a hash under
 * CacheMemoryContext, holding the active version's parsed weights.  A
 * relcache callback on rl_mlops.models bumps serve_generation; deploy and
 * rollback queue that invalidation (rl_mlops._invalidate_serving()), so
 * other backends get it when the deploying transaction commits, hot
 * standbys when they replay the commit, and the deploying backend itself
 * at its next command (and again when it rolls back).  An entry checked at
 * an older generation re-reads the registry on its next use and re-parses
 * only if the active version changed.  In between, act() is a cache lookup
 * and a forward pass: no SPI, no catalog access.
 *
 * The re-read uses a fresh snapshot, not the statement's: the message may
 * be processed mid-statement, after the statement's snapshot was taken,
 * and reading the old active row then would keep the old model cached
 * until the next deploy.  In parallel mode no fresh snapshot can be taken;
 * what was read there is used, but re-checked by the next call outside
 * parallel mode.
 *
 * The registry (rl_mlops.agents, rl_mlops.models and the checkpoint large
 * objects) is read as the extension's owner, so that a role with USAGE on
 * the schema and EXECUTE on these functions can serve without any
 * privilege on the registry, and by index scans rather than SQL, so that
 * the first call of a new connection has nothing to parse or plan.  The
 * source relation is read as the caller, through SPI (source.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "agent.h"
#include "backtest.h"
#include "checkpoint.h"
#include "guc.h"
#include "lo.h"
#include "owner.h"
#include "registry_rows.h"
#include "serve.h"

PG_FUNCTION_INFO_V1(rl_serving_cache);

/* Bytes of an agent name: 63 characters of up to 4 bytes, plus the NUL. */
#define SERVE_KEY_LEN RL_AGENT_NAME_BYTES

/* An A/B challenger of an agent: it decides for its share of the symbols. */
typedef struct ServeChallenger
{
	char	   *version;
	double		share;
	MemoryContext cxt;			/* owns version and model */
	ServeModel *model;
} ServeChallenger;

/* An agent's cached active model, and its A/B challengers in slot order. */
typedef struct ServeEntry
{
	char		agent[SERVE_KEY_LEN];	/* hash key */
	uint64		checked_gen;	/* serve_generation at the last registry
								 * read */
	bool		fresh;			/* that read used a fresh snapshot */
	MemoryContext cxt;			/* owns model */
	ServeModel *model;			/* NULL: the agent has no active model */
	int64		reads;			/* registry reads */
	int64		loads;			/* checkpoints parsed */
	int			n_ab;
	ServeChallenger ab[RL_MAX_CHALLENGERS];
} ServeEntry;

/* One registry read, done as the extension owner. */
typedef struct RegistryRead
{
	const char *agent;
	const char *version;		/* NULL: the active version */
	bool		fresh;			/* read with a fresh snapshot */
	bool		want_model;		/* look up the model row (and load it) */
	const ServeModel *cached;	/* not reloaded if still the one */
	MemoryContext cxt;			/* where results go */
	bool		has_model;		/* out: a model row was found */
	ServeModel *model;			/* out: loaded, NULL if "cached" matched */
	double		sigma;			/* out: the row's sigma */
	bool		has_range;		/* out: the row's data_from and data_to */
	TimestampTz data_from;
	TimestampTz data_to;
	const ServeEntry *old;		/* challengers: reuse what this entry has */
	bool		want_ab;		/* read the A/B challengers */
	int			n_ab;			/* out: the A/B challengers */
	ServeChallenger ab[RL_MAX_CHALLENGERS];
} RegistryRead;

/* What act, policy and value keep in fn_extra across the rows of a query. */
typedef struct ServeCall
{
	ServeEntry *entry;
	int			len;			/* -1: nothing cached */
	char		agent[SERVE_KEY_LEN];
} ServeCall;

static MemoryContext serve_cxt = NULL;
static HTAB *serve_cache = NULL;
static uint64 serve_generation = 1; /* new entries (0) are stale */
static Oid	serve_models_relid = InvalidOid;

/*
 * Relcache callback: rl_mlops.models changed (a deploy or rollback
 * committed) or every cache is being reset.  Only marks entries stale:
 * reading the registry here would be unsafe.
 */
static void
serve_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == serve_models_relid)
		serve_generation++;
}

/* One callback per backend, registered when the library is loaded. */
void
rl_serve_init(void)
{
	CacheRegisterRelcacheCallback(serve_relcache_callback, (Datum) 0);
}

/* The fast-path test: nothing was invalidated since the entry was read. */
static inline bool
entry_current(const ServeEntry *entry)
{
	return entry != NULL && entry->checked_gen == serve_generation &&
		(entry->fresh || IsInParallelMode());
}

/* Serving needs a deployed model; say how to get one. */
static void
pg_attribute_noreturn()
no_active_model(const char *agent)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("agent \"%s\" has no active model", agent),
			 errhint("Deploy a validated version with rl_mlops.deploy_model(), or train one with rl_mlops.retrain().")));
}

/*
 * The active (partial unique index on agent) or the named (primary key)
 * model row: its version, checkpoint oid and sha256.
 */
static bool
read_model_row(RegistryRead *rr, char **version, Oid *checkpoint,
			   char **sha256)
{
	Relation	rel = table_open(rl_registry_relid("models"), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;
	bool		isnull;
	MemoryContext old;

	rl_registry_text_key(&keys[0], rel, "agent", rr->agent);
	if (rr->version != NULL)
		rl_registry_text_key(&keys[1], rel, "version", rr->version);
	scan = systable_beginscan(rel,
							  rl_registry_relid(rr->version ? "models_pkey" :
											 "models_one_active_per_agent"),
							  true, GetActiveSnapshot(),
							  rr->version ? 2 : 1, keys);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		char	   *state = rl_registry_column_string(rel, tup, "state");

		found = rr->version != NULL || strcmp(state, "active") == 0;
		if (found)
		{
			old = MemoryContextSwitchTo(rr->cxt);
			*version = rl_registry_column_string(rel, tup, "version");
			*checkpoint = DatumGetObjectId(rl_registry_column(rel, tup, "checkpoint", &isnull));
			*sha256 = rl_registry_column_string(rel, tup, "sha256");
			MemoryContextSwitchTo(old);
			rr->sigma = DatumGetFloat8(rl_registry_column(rel, tup, "sigma", &isnull));
			rr->data_from = DatumGetTimestampTz(rl_registry_column(rel, tup, "data_from", &isnull));
			rr->has_range = !isnull;
			rr->data_to = DatumGetTimestampTz(rl_registry_column(rel, tup, "data_to", &isnull));
			rr->has_range = rr->has_range && !isnull;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* A copy of n floats in the current memory context. */
static const float *
copy_floats(const float *src, Size n)
{
	float	   *dst = palloc(n * sizeof(float));

	memcpy(dst, src, n * sizeof(float));
	return dst;
}

/*
 * Read, verify and parse a checkpoint, keeping only what serving needs (the
 * eight parameter tensors, not the optimizer state) in cxt.  The tensors
 * are checked against the checkpoint's own architecture, which validation
 * matched with the agent's before the version could be deployed; decide()
 * and the backtests compare the two again.  A plain PyTorch file has no
 * architecture or sigma of its own: the agent's and the row's are used.
 */
static ServeModel *
load_model(const char *agent, const char *version, Oid checkpoint,
		   const char *sha256, double sigma, MemoryContext cxt)
{
	RlCheckpointKnown known = {{0}, sigma};
	MemoryContext parse_cxt;
	MemoryContext old;
	char	   *buf;
	Size		len;
	RlCheckpoint *ckpt;
	RlArch		arch;
	RlWeights	w;
	ServeModel *m;
	Size		h;

	parse_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "rl_mlops checkpoint parse",
									  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(parse_cxt);
	buf = rl_lo_read_verified(checkpoint, sha256, &len);
	ckpt = rl_checkpoint_parse(buf, len, RL_MAX_CHECKPOINT_BYTES, &known);
	if (strcmp(ckpt->format, RL_CHECKPOINT_FORMAT) != 0)
		ckpt->arch = rl_agent_read(agent)->arch;
	arch = rl_arch_make(ckpt->arch.window, ckpt->arch.n_features, ckpt->arch.hidden);
	rl_checkpoint_check_arch(ckpt, &arch, false);
	rl_checkpoint_weights(ckpt, &w);
	h = arch.hidden;

	MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(ServeModel));
	m->version = pstrdup(version);
	m->checkpoint = checkpoint;
	strlcpy(m->sha256, sha256, sizeof(m->sha256));
	m->sigma = ckpt->sigma;
	m->w.arch = arch;
	m->w.trunk0_w = copy_floats(w.trunk0_w, h * arch.obs_dim);
	m->w.trunk0_b = copy_floats(w.trunk0_b, h);
	m->w.trunk2_w = copy_floats(w.trunk2_w, h * h);
	m->w.trunk2_b = copy_floats(w.trunk2_b, h);
	m->w.actor_w = copy_floats(w.actor_w, RL_N_ACTIONS * h);
	m->w.actor_b = copy_floats(w.actor_b, RL_N_ACTIONS);
	m->w.critic_w = copy_floats(w.critic_w, h);
	m->w.critic_b = copy_floats(w.critic_b, 1);
	m->work = palloc(RL_BACKTEST_WORK_FLOATS(&arch) * sizeof(float));

	MemoryContextSwitchTo(old);
	MemoryContextDelete(parse_cxt);
	return m;
}

/* The bars a model was trained and validated on, from its registry row. */
static void
set_data_range(ServeModel *m, const RegistryRead *rr)
{
	m->has_data_range = rr->has_range;
	m->data_from = rr->data_from;
	m->data_to = rr->data_to;
}

/* A/B challengers in slot order. */
static int
cmp_slot(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * The agent's A/B challengers (traffic_share > 0, not removed), by slot,
 * each with its model: the entry's own if the checkpoint is the same,
 * else parsed into a context of its own.  Absent while a 0.1.0 schema
 * waits for its update.
 */
static void
read_ab_challengers(RegistryRead *rr)
{
	Oid			relid = get_relname_relid("agent_challengers", get_namespace_oid("rl_mlops", false));
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	struct
	{
		int32		slot;
		char	   *version;
		double		share;
	}			rows[RL_MAX_CHALLENGERS];
	int			n = 0;
	bool		isnull;

	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, AccessShareLock);
	rl_registry_text_key(&key, rel, "agent", rr->agent);
	scan = systable_beginscan(rel, rl_registry_relid("agent_challengers_pkey"), true,
							  GetActiveSnapshot(), 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		double		share = DatumGetFloat8(rl_registry_column(rel, tup, "traffic_share", &isnull));

		(void) rl_registry_column(rel, tup, "removed_at", &isnull);
		if (!isnull || share <= 0 || n == RL_MAX_CHALLENGERS)
			continue;
		rows[n].slot = DatumGetInt32(rl_registry_column(rel, tup, "slot", &isnull));
		rows[n].version = rl_registry_column_string(rel, tup, "version");
		rows[n++].share = share;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	qsort(rows, n, sizeof(rows[0]), cmp_slot);

	for (int i = 0; i < n; i++)
	{
		RegistryRead one = {0};
		char	   *version = NULL;
		Oid			checkpoint = InvalidOid;
		char	   *sha256 = NULL;
		ServeChallenger *c = &rr->ab[rr->n_ab];

		one.agent = rr->agent;
		one.version = rows[i].version;
		one.cxt = CurrentMemoryContext;
		if (!read_model_row(&one, &version, &checkpoint, &sha256))
			continue;
		c->share = rows[i].share;
		c->cxt = NULL;
		c->model = NULL;
		for (int j = 0; rr->old != NULL && j < rr->old->n_ab; j++)
		{
			const ServeChallenger *o = &rr->old->ab[j];

			if (o->model->checkpoint == checkpoint && strcmp(o->version, version) == 0 &&
				strcmp(o->model->sha256, sha256) == 0)
			{
				c->cxt = o->cxt;
				c->model = o->model;
				c->version = o->version;
			}
		}
		if (c->model == NULL)
		{
			c->cxt = AllocSetContextCreate(CurrentMemoryContext, "rl_mlops challenger",
										   ALLOCSET_SMALL_SIZES);
			c->model = load_model(rr->agent, version, checkpoint, sha256,
								  one.sigma, c->cxt);
			set_data_range(c->model, &one);
			c->version = MemoryContextStrdup(c->cxt, version);
		}
		rr->n_ab++;
	}
}

/*
 * The body of a registry read: the active (or the named) model row, then
 * the checkpoint unless the cached one is still it.  The agent's row is
 * read only when there is no model row, to tell an unknown agent from one
 * without a model: the first act() of a backend has one table fewer to
 * open.
 */
static void
registry_read_body(RegistryRead *rr)
{
	char	   *version = NULL;
	Oid			checkpoint = InvalidOid;
	char	   *sha256 = NULL;

	rr->has_model = read_model_row(rr, &version, &checkpoint, &sha256);
	if (!rr->has_model)
	{
		(void) rl_agent_read(rr->agent);	/* an unknown agent's error */
		if (rr->version != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model version \"%s\" of agent \"%s\" does not exist",
							rr->version, rr->agent),
					 errhint("SELECT version, state FROM rl_mlops.models_overview lists the versions.")));
		return;
	}
	if (rr->cached == NULL || rr->cached->checkpoint != checkpoint ||
		strcmp(rr->cached->version, version) != 0 ||
		strcmp(rr->cached->sha256, sha256) != 0)
		rr->model = load_model(rr->agent, version, checkpoint, sha256,
							   rr->sigma, rr->cxt);
	if (rr->model != NULL)
		set_data_range(rr->model, rr);
	if (rr->want_ab)
		read_ab_challengers(rr);
}

/*
 * Read the registry as the extension owner (restoring the caller's
 * identity however it ends), with a fresh snapshot when asked, else with
 * the statement's.
 */
static void
registry_read(RegistryRead *rr)
{
	bool		push = rr->fresh || !ActiveSnapshotSet();
	RlSavedUser saved;

	if (push)
		PushActiveSnapshot(rr->fresh ? GetLatestSnapshot() :
						   GetTransactionSnapshot());
	saved = rl_become_owner();
	PG_TRY();
	{
		registry_read_body(rr);
	}
	PG_FINALLY();
	{
		rl_restore_user(saved);
	}
	PG_END_TRY();
	if (push)
		PopActiveSnapshot();
}

/* A named version, parsed for this call only (backtests of old versions). */
ServeModel *
rl_serve_version(const char *agent, const char *version)
{
	RegistryRead rr = {0};

	rr.agent = agent;
	rr.version = version;
	rr.cxt = CurrentMemoryContext;
	registry_read(&rr);
	return rr.model;
}

/* The hash of cached models, created on first use. */
static void
serve_cache_init(void)
{
	HASHCTL		ctl;

	if (CacheMemoryContext == NULL)
		CreateCacheMemoryContext();
	serve_cxt = AllocSetContextCreate(CacheMemoryContext,
									  "rl_mlops serving cache",
									  ALLOCSET_SMALL_SIZES);
	ctl.keysize = SERVE_KEY_LEN;
	ctl.entrysize = sizeof(ServeEntry);
	ctl.hcxt = serve_cxt;
	serve_cache = hash_create("rl_mlops serving cache", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * The entry takes the challengers just read: new models move under the
 * cache, those no longer A/B challengers are freed.
 */
static void
adopt_ab_challengers(ServeEntry *entry, RegistryRead *rr)
{
	for (int j = 0; j < entry->n_ab; j++)
	{
		bool		kept = false;

		for (int i = 0; i < rr->n_ab; i++)
			kept |= rr->ab[i].cxt == entry->ab[j].cxt;
		if (!kept)
			MemoryContextDelete(entry->ab[j].cxt);
	}
	for (int i = 0; i < rr->n_ab; i++)
	{
		if (MemoryContextGetParent(rr->ab[i].cxt) != serve_cxt)
		{
			MemoryContextSetParent(rr->ab[i].cxt, serve_cxt);
			entry->loads++;
		}
		entry->ab[i] = rr->ab[i];
	}
	entry->n_ab = rr->n_ab;
}

/*
 * The agent's cache entry, up to date: re-read the registry if an
 * invalidation arrived since the entry was last read, and re-parse only if
 * the active version changed.  Errors leave the entry stale, never half
 * updated.
 */
static ServeEntry *
serve_entry(const char *agent)
{
	uint64		gen = serve_generation;
	ServeEntry *entry;
	RegistryRead rr = {0};
	bool		found;

	if (strlen(agent) >= SERVE_KEY_LEN)
		rl_unknown_agent(agent);
	if (serve_cache == NULL)
		serve_cache_init();
	entry = hash_search(serve_cache, agent, HASH_FIND, NULL);
	if (entry_current(entry))
		return entry;

	/*
	 * Known before the snapshot is taken, so that a deploy committing while
	 * we read is not ignored by the callback.
	 */
	serve_models_relid = get_relname_relid("models",
										   get_namespace_oid("rl_mlops", true));

	rr.agent = agent;
	rr.fresh = !IsInParallelMode();
	rr.cached = entry != NULL ? entry->model : NULL;
	rr.old = entry;
	rr.want_ab = true;
	rr.cxt = AllocSetContextCreate(CurrentMemoryContext, "rl_mlops model",
								   ALLOCSET_SMALL_SIZES);
	registry_read(&rr);

	entry = hash_search(serve_cache, agent, HASH_ENTER, &found);
	if (!found)
	{
		entry->cxt = NULL;
		entry->model = NULL;
		entry->reads = 0;
		entry->loads = 0;
		entry->n_ab = 0;
	}
	entry->reads++;
	if (!rr.has_model || rr.model != NULL)
	{
		/* no active model any more, or a new one: replace what we had */
		if (entry->cxt != NULL)
			MemoryContextDelete(entry->cxt);
		entry->cxt = NULL;
		entry->model = NULL;
		if (rr.model != NULL)
		{
			MemoryContextSetParent(rr.cxt, serve_cxt);
			entry->cxt = rr.cxt;
			entry->model = rr.model;
			entry->loads++;
		}
	}
	if (entry->cxt != rr.cxt)
		MemoryContextDelete(rr.cxt);
	adopt_ab_challengers(entry, &rr);
	entry->checked_gen = gen;
	entry->fresh = rr.fresh;
	return entry;
}

/* The active model of an agent, or the "no active model" error. */
ServeModel *
rl_serve_active_model(const char *agent)
{
	ServeEntry *entry = serve_entry(agent);

	if (entry->model == NULL)
		no_active_model(agent);
	return entry->model;
}

/*
 * Where a symbol falls in [0, 1): a stable hash of its bytes (the same in
 * every backend and on standbys), for the A/B split.
 */
double
rl_serve_symbol_point(const char *symbol)
{
	uint64		h = hash_bytes_extended((const unsigned char *) symbol, (int) strlen(symbol),
										UINT64CONST(0x726c5f6d6c6f7073));

	return (double) (h >> 11) * (1.0 / 9007199254740992.0);
}

/*
 * The model that decides for a symbol: the A/B challenger whose interval
 * holds the symbol's point (intervals laid end to end from 0 in slot
 * order, each as wide as its share), else the champion.
 */
ServeModel *
rl_serve_decider(const char *agent, const char *symbol)
{
	ServeEntry *entry = serve_entry(agent);
	double		point;
	double		end = 0;

	if (entry->model == NULL)
		no_active_model(agent);
	if (entry->n_ab == 0)
		return entry->model;
	point = rl_serve_symbol_point(symbol);
	for (int i = 0; i < entry->n_ab; i++)
	{
		end += entry->ab[i].share;
		if (point < end)
			return entry->ab[i].model;
	}
	return entry->model;
}

/*
 * The model for act/policy/value: fn_extra remembers the last agent's
 * entry, so a query over many observations skips even the hash lookup.
 */
ServeModel *
rl_serve_model_for_call(FunctionCallInfo fcinfo)
{
	text	   *agent = PG_GETARG_TEXT_PP(1);
	int			len = VARSIZE_ANY_EXHDR(agent);
	ServeCall  *call = (ServeCall *) fcinfo->flinfo->fn_extra;

	if (call == NULL)
	{
		call = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(ServeCall));
		call->entry = NULL;
		call->len = -1;
		fcinfo->flinfo->fn_extra = call;
	}
	if (call->len != len ||
		memcmp(call->agent, VARDATA_ANY(agent), len) != 0 ||
		!entry_current(call->entry))
	{
		char	   *name = text_to_cstring(agent);

		call->len = -1;
		call->entry = serve_entry(name);
		if (len < SERVE_KEY_LEN)
		{
			memcpy(call->agent, VARDATA_ANY(agent), len);
			call->len = len;
		}
	}
	if (call->entry->model == NULL)
		no_active_model(call->entry->agent);
	return call->entry->model;
}

/* serving_cache(): what this backend has cached, for DBAs and tests. */
Datum
rl_serving_cache(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	ServeEntry *entry;

	InitMaterializedSRF(fcinfo, 0);
	if (serve_cache == NULL)
		return (Datum) 0;
	hash_seq_init(&seq, serve_cache);
	while ((entry = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = CStringGetTextDatum(entry->agent);
		if (entry->model != NULL)
			values[1] = CStringGetTextDatum(entry->model->version);
		else
			nulls[1] = true;
		values[2] = BoolGetDatum(entry_current(entry));
		values[3] = Int64GetDatum(entry->reads);
		values[4] = Int64GetDatum(entry->loads);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
		/* its A/B challengers, one row each */
		for (int i = 0; i < entry->n_ab; i++)
		{
			values[1] = CStringGetTextDatum(entry->ab[i].version);
			nulls[1] = false;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
								 nulls);
		}
	}
	return (Datum) 0;
}
