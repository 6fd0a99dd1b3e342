/*-------------------------------------------------------------------------
 *
 * agent.c
 *	  Reading an agent's row of rl_mlops.agents (see agent.h).
 *
 * By an index scan on its primary key with the active snapshot: no SQL,
 * no privilege check (callers that act for a less privileged role read
 * as the owner anyway), the same struct for every caller.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "agent.h"
#include "registry_rows.h"

/* Column getters of one row, for the long list below. */
#define INT32_COL(name) DatumGetInt32(rl_registry_column(rel, tup, name, &isnull))
#define FLOAT8_COL(name) DatumGetFloat8(rl_registry_column(rel, tup, name, &isnull))
#define INTERVAL_COL(name) DatumGetCString(DirectFunctionCall1(interval_out, \
	rl_registry_column(rel, tup, name, &isnull)))

/*
 * The agent's settings in the current memory context, or the "does not
 * exist" error.  Needs an active snapshot.
 */
RlAgent *
rl_agent_read(const char *name)
{
	Relation	rel = table_open(rl_registry_relid("agents"), AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	RlAgent    *a;
	bool		isnull;

	rl_registry_text_key(&key, rel, "name", name);
	scan = systable_beginscan(rel, rl_registry_relid("agents_pkey"), true,
							  GetActiveSnapshot(), 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		rl_unknown_agent(name);

	a = palloc0(sizeof(RlAgent));
	a->name = pstrdup(name);
	a->source.agent = a->name;
	a->source.relid = DatumGetObjectId(rl_registry_column(rel, tup, "source", &isnull));
	a->source.symbol_column = rl_registry_column_string(rel, tup, "symbol_column");
	a->source.time_column = rl_registry_column_string(rel, tup, "time_column");
	a->source.price_column = rl_registry_column_string(rel, tup, "price_column");
	a->source.features_column = rl_registry_column_string(rel, tup, "features_column");
	a->source.n_features = INT32_COL("n_features");
	a->arch = rl_arch_make(INT32_COL("window_size"), a->source.n_features,
						   INT32_COL("hidden_size"));
	a->data_window = INTERVAL_COL("data_window");
	a->holdout_fraction = FLOAT8_COL("holdout_fraction");
	a->initial_epochs = INT32_COL("initial_epochs");
	a->incremental_epochs = INT32_COL("incremental_epochs");
	a->episode_length = INT32_COL("episode_length");
	a->cost = FLOAT8_COL("transaction_cost");
	a->learning_rate = FLOAT8_COL("learning_rate");
	a->gamma = FLOAT8_COL("gamma");
	a->gae_lambda = FLOAT8_COL("gae_lambda");
	a->clip_range = FLOAT8_COL("clip_range");
	a->update_passes = INT32_COL("update_passes");
	a->minibatch_size = INT32_COL("minibatch_size");
	a->value_coef = FLOAT8_COL("value_coef");
	a->entropy_coef = FLOAT8_COL("entropy_coef");
	a->max_grad_norm = FLOAT8_COL("max_grad_norm");
	a->seed = DatumGetInt64(rl_registry_column(rel, tup, "seed", &isnull));
	a->threads = INT32_COL("threads");
	a->deploy_gate = rl_registry_column_string(rel, tup, "deploy_gate");
	a->gate_min_delta = FLOAT8_COL("gate_min_delta");
	/* 0.2.0's settings: absent while a 0.1.0 schema waits for its update */
	if (rl_registry_has_column(rel, "probation_days"))
	{
		a->probation_days = INT32_COL("probation_days");
		a->auto_rollback = DatumGetBool(rl_registry_column(rel, tup, "auto_rollback", &isnull));
		a->monitor_alpha = FLOAT8_COL("monitor_alpha");
		a->min_live_decisions = INT32_COL("min_live_decisions");
		a->max_live_drawdown = FLOAT8_COL("max_live_drawdown");
		a->stale_after = INTERVAL_COL("stale_after");
		a->rollback_cooldown = INTERVAL_COL("rollback_cooldown");
		a->ledger_retention_days = INT32_COL("ledger_retention_days");
		a->retrain_on_drift = DatumGetBool(rl_registry_column(rel, tup, "retrain_on_drift", &isnull));
		a->auto_promote = DatumGetBool(rl_registry_column(rel, tup, "auto_promote", &isnull));
	}

	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return a;
}
