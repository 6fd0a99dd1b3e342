/*-------------------------------------------------------------------------
 *
 * serve.c
 *	  Serving from SQL (DESIGN section 8): act, policy and value over an
 *	  observation, decide over the agent's source relation, and backtests
 *	  of the active or a named version.
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
 * src/serve.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backtest.h"
#include "checkpoint.h"
#include "env.h"
#include "forward.h"
#include "guc.h"
#include "lo.h"
#include "owner.h"
#include "serve.h"
#include "source.h"

PG_FUNCTION_INFO_V1(rl_act);
PG_FUNCTION_INFO_V1(rl_policy);
PG_FUNCTION_INFO_V1(rl_value);
PG_FUNCTION_INFO_V1(rl_decide);
PG_FUNCTION_INFO_V1(rl_backtest_rows);
PG_FUNCTION_INFO_V1(rl_backtest_summary);
PG_FUNCTION_INFO_V1(rl_serving_cache);

/* Bytes of an agent name: 63 characters of up to 4 bytes, plus the NUL. */
#define SERVE_KEY_LEN 256

/* A parsed checkpoint, ready for rl_forward. */
typedef struct ServeModel
{
	char	   *version;
	Oid			checkpoint;
	char		sha256[65];
	double		sigma;
	RlWeights	w;
	float	   *work;			/* RL_BACKTEST_WORK_FLOATS(&w.arch) floats */
} ServeModel;

/* An agent's cached active model. */
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
} ServeEntry;

/* An agent's settings, from its rl_mlops.agents row. */
typedef struct ServeAgent
{
	RlSource	source;
	RlArch		arch;
	int32		episode_length;
	double		cost;
} ServeAgent;

/* One registry read, done as the extension owner. */
typedef struct RegistryRead
{
	const char *agent;
	const char *version;		/* NULL: the active version */
	bool		fresh;			/* read with a fresh snapshot */
	bool		want_agent;		/* read the agent's settings */
	bool		want_model;		/* look up the model row (and load it) */
	const ServeModel *cached;	/* not reloaded if still the one */
	MemoryContext cxt;			/* where results go */
	ServeAgent *settings;		/* out */
	bool		has_model;		/* out: a model row was found */
	ServeModel *model;			/* out: loaded, NULL if "cached" matched */
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

/* The same error wherever an agent name matches no row. */
static void
pg_attribute_noreturn()
unknown_agent(const char *agent)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("agent \"%s\" does not exist", agent),
			 errhint("Create it with rl_mlops.create_agent().")));
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

/* A registry relation (table or index) of schema rl_mlops, by name. */
static Oid
registry_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("rl_mlops", false));

	if (!OidIsValid(relid))
		elog(ERROR, "relation rl_mlops.%s does not exist", name);
	return relid;
}

/* Attribute number of a registry table's column, by name. */
static AttrNumber
column_number(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	elog(ERROR, "column \"%s\" of relation rl_mlops.%s does not exist",
		 name, RelationGetRelationName(rel));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/* A column of a registry row by name; NULL only where the table allows it. */
static Datum
column(Relation rel, HeapTuple tup, const char *name, bool *isnull)
{
	return heap_getattr(tup, column_number(rel, name), RelationGetDescr(rel),
						isnull);
}

/* A text or name column as a C string in the current context, or NULL. */
static char *
column_string(Relation rel, HeapTuple tup, const char *name)
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
static void
text_key(ScanKey key, Relation rel, const char *name, const char *value)
{
	AttrNumber	att = column_number(rel, name);
	Oid			collation = TupleDescAttr(RelationGetDescr(rel), att - 1)->attcollation;

	ScanKeyEntryInitialize(key, 0, att, BTEqualStrategyNumber, InvalidOid,
						   collation, F_TEXTEQ, CStringGetTextDatum(value));
}

/*
 * The agent's row: source, architecture and the settings serving uses.
 * The registry is read by index scans, not SQL: nothing to parse or plan,
 * which keeps the first call of a new connection cheap.
 */
static void
read_agent_row(RegistryRead *rr)
{
	Relation	rel = table_open(registry_relid("agents"), AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	ServeAgent *a;
	bool		isnull;
	MemoryContext old;

	text_key(&key, rel, "name", rr->agent);
	scan = systable_beginscan(rel, registry_relid("agents_pkey"), true,
							  GetActiveSnapshot(), 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		unknown_agent(rr->agent);

	old = MemoryContextSwitchTo(rr->cxt);
	a = palloc0(sizeof(ServeAgent));
	a->source.agent = pstrdup(rr->agent);
	a->source.relid = DatumGetObjectId(column(rel, tup, "source", &isnull));
	a->source.symbol_column = column_string(rel, tup, "symbol_column");
	a->source.time_column = column_string(rel, tup, "time_column");
	a->source.price_column = column_string(rel, tup, "price_column");
	a->source.features_column = column_string(rel, tup, "features_column");
	a->source.n_features = DatumGetInt32(column(rel, tup, "n_features", &isnull));
	a->arch.window = DatumGetInt32(column(rel, tup, "window_size", &isnull));
	a->arch.n_features = a->source.n_features;
	a->arch.obs_dim = a->arch.window + 1 + a->arch.n_features;
	a->arch.hidden = DatumGetInt32(column(rel, tup, "hidden_size", &isnull));
	a->arch.n_actions = RL_N_ACTIONS;
	a->episode_length = DatumGetInt32(column(rel, tup, "episode_length", &isnull));
	a->cost = DatumGetFloat8(column(rel, tup, "transaction_cost", &isnull));
	MemoryContextSwitchTo(old);
	rr->settings = a;

	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * The active (partial unique index on agent) or the named (primary key)
 * model row: its version, checkpoint oid and sha256.
 */
static bool
read_model_row(RegistryRead *rr, char **version, Oid *checkpoint,
			   char **sha256)
{
	Relation	rel = table_open(registry_relid("models"), AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;
	bool		isnull;
	MemoryContext old;

	text_key(&keys[0], rel, "agent", rr->agent);
	if (rr->version != NULL)
		text_key(&keys[1], rel, "version", rr->version);
	scan = systable_beginscan(rel,
							  registry_relid(rr->version ? "models_pkey" :
											 "models_one_active_per_agent"),
							  true, GetActiveSnapshot(),
							  rr->version ? 2 : 1, keys);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		char	   *state = column_string(rel, tup, "state");

		found = rr->version != NULL || strcmp(state, "active") == 0;
		if (found)
		{
			old = MemoryContextSwitchTo(rr->cxt);
			*version = column_string(rel, tup, "version");
			*checkpoint = DatumGetObjectId(column(rel, tup, "checkpoint", &isnull));
			*sha256 = column_string(rel, tup, "sha256");
			MemoryContextSwitchTo(old);
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
 * and the backtests compare the two again.
 */
static ServeModel *
load_model(const char *version, Oid checkpoint, const char *sha256,
		   MemoryContext cxt)
{
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
	ckpt = rl_checkpoint_parse(buf, len, RL_MAX_CHECKPOINT_BYTES);
	arch = ckpt->arch;
	arch.obs_dim = arch.window + 1 + arch.n_features;
	arch.n_actions = RL_N_ACTIONS;
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

/*
 * The body of a registry read: the agent's row if asked for, then the
 * active (or the named) model row, then the checkpoint unless the cached
 * one is still it.  Serving the active model reads the agent's row only
 * when there is no model row, to tell an unknown agent from one without a
 * model: the first act() of a backend has one table fewer to open.
 */
static void
registry_read_body(RegistryRead *rr)
{
	char	   *version = NULL;
	Oid			checkpoint = InvalidOid;
	char	   *sha256 = NULL;

	if (rr->want_agent)
		read_agent_row(rr);
	if (!rr->want_model)
		return;
	rr->has_model = read_model_row(rr, &version, &checkpoint, &sha256);
	if (!rr->has_model)
	{
		if (!rr->want_agent)
			read_agent_row(rr);
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
		rr->model = load_model(version, checkpoint, sha256, rr->cxt);
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

/* Settings of an agent (as the extension owner): decide and backtest. */
static ServeAgent *
read_agent(const char *agent)
{
	RegistryRead rr = {0};

	rr.agent = agent;
	rr.want_agent = true;
	rr.cxt = CurrentMemoryContext;
	registry_read(&rr);
	return rr.settings;
}

/* A named version, parsed for this call only (backtests of old versions). */
static ServeModel *
read_version(const char *agent, const char *version)
{
	RegistryRead rr = {0};

	rr.agent = agent;
	rr.version = version;
	rr.want_model = true;
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
		unknown_agent(agent);
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
	rr.want_model = true;
	rr.cached = entry != NULL ? entry->model : NULL;
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
	entry->checked_gen = gen;
	entry->fresh = rr.fresh;
	return entry;
}

/* The active model of an agent, or the "no active model" error. */
static ServeModel *
active_model(const char *agent)
{
	ServeEntry *entry = serve_entry(agent);

	if (entry->model == NULL)
		no_active_model(agent);
	return entry->model;
}

/*
 * The model for act/policy/value: fn_extra remembers the last agent's
 * entry, so a query over many observations skips even the hash lookup.
 */
static ServeModel *
model_for_call(FunctionCallInfo fcinfo)
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

/*
 * The observation argument as floats, refused unless it is exactly what
 * the network takes: one dimension, obs_dim elements, no NULL, finite.
 */
static const float *
observation_arg(FunctionCallInfo fcinfo, const RlArch *arch)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int			ndim = ARR_NDIM(arr);
	int			n = ndim == 0 ? 0 : ARR_DIMS(arr)[0];
	const float *v;

	if (ndim > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("observation must be a one-dimensional array"),
				 errdetail("The array has %d dimensions.", ndim)));
	if (n != arch->obs_dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("observation has the wrong length"),
				 errdetail("expected %d, got %d", arch->obs_dim, n),
				 errhint("An observation is %d scaled returns, the current position and %d features.",
						 arch->window, arch->n_features)));
	if (ARR_HASNULL(arr))
	{
		bits8	   *bitmap = ARR_NULLBITMAP(arr);
		int			j = 0;

		while (j < n && (bitmap[j / 8] & (1 << (j % 8))) != 0)
			j++;
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("observation must not contain nulls"),
				 errdetail("Element %d is null.", j + 1)));
	}
	v = (const float *) ARR_DATA_PTR(arr);
	for (int j = 0; j < n; j++)
	{
		if (!isfinite(v[j]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("observation must be finite"),
					 errdetail("Element %d is %g.", j + 1, (double) v[j])));
	}
	return v;
}

/* act(obs, agent): the greedy action 0, 1 or 2 (short, flat, long). */
Datum
rl_act(PG_FUNCTION_ARGS)
{
	ServeModel *m = model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		probs[RL_N_ACTIONS];

	rl_forward(&m->w, obs, probs, NULL, m->work);
	PG_RETURN_INT32(rl_argmax(probs, RL_N_ACTIONS));
}

/* policy(obs, agent): the softmax probabilities of the three actions. */
Datum
rl_policy(PG_FUNCTION_ARGS)
{
	ServeModel *m = model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		probs[RL_N_ACTIONS];
	Datum		elems[RL_N_ACTIONS];

	rl_forward(&m->w, obs, probs, NULL, m->work);
	for (int a = 0; a < RL_N_ACTIONS; a++)
		elems[a] = Float4GetDatum(probs[a]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, RL_N_ACTIONS, FLOAT4OID,
										  sizeof(float4), true, TYPALIGN_INT));
}

/* value(obs, agent): the critic's estimate of the observation's value. */
Datum
rl_value(PG_FUNCTION_ARGS)
{
	ServeModel *m = model_for_call(fcinfo);
	const float *obs = observation_arg(fcinfo, &m->w.arch);
	float		value;

	rl_forward(&m->w, obs, NULL, &value, m->work);
	PG_RETURN_FLOAT4(value);
}

/*
 * decide() and the backtests build observations from the agent's settings:
 * the model must have been trained for them (validation made sure of it).
 */
static void
check_model_arch(const ServeModel *m, const ServeAgent *ag, const char *agent)
{
	const RlArch *a = &m->w.arch;

	if (a->window != ag->arch.window || a->n_features != ag->arch.n_features ||
		a->hidden != ag->arch.hidden)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("model version \"%s\" does not match the architecture of agent \"%s\"",
						m->version, agent),
				 errdetail("The model has window %d, %d features and hidden size %d; the agent has %d, %d and %d.",
						   a->window, a->n_features, a->hidden, ag->arch.window,
						   ag->arch.n_features, ag->arch.hidden)));
}

/* Environment failures that our own checks should have ruled out. */
static void
check_env(int rc, const char *err)
{
	if (rc != RL_ENV_OK)
		ereport(ERROR,
				(errcode(rc == RL_ENV_TOO_SHORT ? ERRCODE_NO_DATA_FOUND :
						 ERRCODE_DATA_EXCEPTION),
				 errmsg("%s", err)));
}

/* Prices to the series the environment reads (returns and features). */
static RlSeries
series_of(const RlSourceRows *rows)
{
	RlSeries	s;
	double	   *returns = palloc_extended(rows->n * sizeof(double),
										  MCXT_ALLOC_HUGE);
	char		err[RL_ENV_ERRLEN];

	check_env(rl_env_returns(rows->prices, rows->n, returns, err), err);
	s.n = rows->n;
	s.returns = returns;
	s.features = rows->features;
	return s;
}

/* A text argument that must not be NULL in a non-strict function. */
static char *
required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* A timestamptz argument that must not be NULL in a non-strict function. */
static TimestampTz
required_ts(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_TIMESTAMPTZ(argno);
}

/*
 * The position reached by the greedy policy over decisions first .. t - 1,
 * starting flat at first, as an episode does in training and backtests.
 */
static int32
replay_position(const ServeModel *m, const ServeAgent *ag, const RlSeries *s,
				int64 first, int64 t)
{
	RlBacktestStep *steps;
	char		err[RL_ENV_ERRLEN];

	if (first > t - 1)
		return 0;
	steps = palloc((t - first) * sizeof(RlBacktestStep));
	check_env(rl_backtest(&m->w, s, m->sigma, ag->cost, first, t - 1, 1.0,
						  m->work, steps, NULL, err), err);
	return steps[t - 1 - first].position;
}

/*
 * decide(agent, symbol, at, position): the position to hold from the last
 * bar at or before "at", from an observation built as in training.  With
 * position NULL the position held coming in is the one the greedy policy
 * reaches over the preceding episode_length bars, starting flat.
 */
Datum
rl_decide(PG_FUNCTION_ARGS)
{
	char	   *agent = required_text(fcinfo, 0, "agent");
	char	   *symbol = required_text(fcinfo, 1, "symbol");
	TimestampTz at = required_ts(fcinfo, 2, "at");
	bool		replay = PG_ARGISNULL(3);
	int32		position = replay ? 0 : PG_GETARG_INT32(3);
	ServeAgent *ag;
	RlSourceRows *rows;
	RlSeries	s;
	ServeModel *m;
	int32		w;
	int64		t;
	float	   *obs;
	float	   *probs;
	int			action;
	char		err[RL_ENV_ERRLEN];
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};
	Datum		elems[RL_N_ACTIONS];

	if (position < -1 || position > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must be -1, 0 or 1"),
				 errdetail("Got %d.", position)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* the source first: reading it cannot then invalidate the model we use */
	ag = read_agent(agent);
	w = ag->arch.window;
	rows = rl_source_read_last(&ag->source, symbol, at,
							   w + 1 + (replay ? (int64) ag->episode_length : 0));
	if (rows->n < w + 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough history of symbol \"%s\" at %s",
						symbol, timestamptz_to_str(at)),
				 errdetail("An observation needs %d prices (window %d plus one); the source has " INT64_FORMAT " up to that time.",
						   w + 1, w, rows->n)));
	s = series_of(rows);
	t = rows->n - 1;
	m = active_model(agent);
	check_model_arch(m, ag, agent);

	if (replay)
		position = replay_position(m, ag, &s,
								   Max(w, t - ag->episode_length), t);
	obs = m->work;
	probs = m->work + m->w.arch.obs_dim + RL_FORWARD_SCRATCH(&m->w.arch);
	check_env(rl_env_observation(&s, w, ag->arch.n_features, m->sigma, t,
								 position, obs, err), err);
	rl_forward(&m->w, obs, probs, NULL, m->work + m->w.arch.obs_dim);
	action = rl_argmax(probs, RL_N_ACTIONS);

	for (int a = 0; a < RL_N_ACTIONS; a++)
		elems[a] = Float4GetDatum(probs[a]);
	values[0] = Int32GetDatum(rl_action_position(action));
	values[1] = Int32GetDatum(action);
	values[2] = PointerGetDatum(construct_array(elems, RL_N_ACTIONS, FLOAT4OID,
												sizeof(float4), true,
												TYPALIGN_INT));
	values[3] = TimestampTzGetDatum(rows->ts[t]);
	values[4] = Float8GetDatum(rows->prices[t]);
	values[5] = CStringGetTextDatum(m->version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* A finished backtest, for the per-step rows or the summary. */
typedef struct BacktestResult
{
	const ServeModel *model;
	const RlSourceRows *rows;
	int64		t_from;
	int64		t_to;
	double		periods_per_year;
	RlBacktestStep *steps;
	RlBacktestSummary summary;
} BacktestResult;

/*
 * Backtest of backtest(agent, symbol, from, to, version): decisions at
 * every bar in [from, to] that has a full window behind it and a next bar
 * within the range, starting flat.
 */
static void
run_backtest(FunctionCallInfo fcinfo, BacktestResult *res)
{
	char	   *agent = required_text(fcinfo, 0, "agent");
	char	   *symbol = required_text(fcinfo, 1, "symbol");
	TimestampTz from = required_ts(fcinfo, 2, "from");
	TimestampTz to = required_ts(fcinfo, 3, "to");
	char	   *version = PG_ARGISNULL(4) ? NULL :
		text_to_cstring(PG_GETARG_TEXT_PP(4));
	ServeAgent *ag;
	RlSourceRows *rows;
	RlSeries	s;
	int32		w;
	char		err[RL_ENV_ERRLEN];

	if (from > to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backtest range is empty"),
				 errdetail("\"from\" (%s) is after \"to\" (%s).",
						   pstrdup(timestamptz_to_str(from)),
						   pstrdup(timestamptz_to_str(to)))));

	ag = read_agent(agent);
	w = ag->arch.window;
	rows = rl_source_read_range(&ag->source, symbol, from, to, w);
	res->rows = rows;
	res->t_from = Max(rows->n_before, w);
	res->t_to = rows->n - 2;
	if (res->t_to < res->t_from)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("not enough history for a backtest of symbol \"%s\"",
						symbol),
				 errdetail("A decision needs %d earlier prices and a later price in the range; the source has " INT64_FORMAT " rows in the range and " INT64_FORMAT " before it.",
						   w, rows->n - rows->n_before, rows->n_before)));
	s = series_of(rows);
	res->model = version != NULL ? read_version(agent, version) :
		active_model(agent);
	check_model_arch(res->model, ag, agent);
	res->periods_per_year =
		rl_source_periods_per_year(rows->ts + res->t_from,
								   res->t_to - res->t_from + 2);
	res->steps = palloc_extended((res->t_to - res->t_from + 1) *
								 sizeof(RlBacktestStep), MCXT_ALLOC_HUGE);
	check_env(rl_backtest(&res->model->w, &s, res->model->sigma, ag->cost,
						  res->t_from, res->t_to, res->periods_per_year,
						  res->model->work, res->steps, &res->summary, err),
			  err);
}

/*
 * backtest(...): one row per decision: the bar's time and price, the
 * position held until the next bar, the reward earned over it and the
 * equity after it (from 1.0).
 */
Datum
rl_backtest_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BacktestResult res;

	run_backtest(fcinfo, &res);
	InitMaterializedSRF(fcinfo, 0);
	for (int64 i = 0; i <= res.t_to - res.t_from; i++)
	{
		const RlBacktestStep *st = &res.steps[i];
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = TimestampTzGetDatum(res.rows->ts[st->t]);
		values[1] = Float8GetDatum(res.rows->prices[st->t]);
		values[2] = Int32GetDatum(st->position);
		values[3] = Float8GetDatum(st->reward);
		values[4] = Float8GetDatum(st->equity);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
	return (Datum) 0;
}

/* backtest_summary(...): the metrics of the same backtest in one row. */
Datum
rl_backtest_summary(PG_FUNCTION_ARGS)
{
	BacktestResult res;
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	run_backtest(fcinfo, &res);
	values[0] = CStringGetTextDatum(res.model->version);
	values[1] = Int64GetDatum(res.summary.n_steps);
	values[2] = Float8GetDatum(res.summary.total_log_return);
	values[3] = Float8GetDatum(res.summary.sharpe);
	values[4] = Float8GetDatum(res.summary.max_drawdown);
	values[5] = Float8GetDatum(res.summary.turnover);
	values[6] = Float8GetDatum(res.summary.buy_hold_log_return);
	values[7] = Float8GetDatum(res.periods_per_year);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
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
	}
	return (Datum) 0;
}
