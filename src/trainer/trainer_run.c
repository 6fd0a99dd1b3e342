/*-------------------------------------------------------------------------
 *
 * trainer_run.c
 *	  The training run worker: the seed's retraining flow (DESIGN section
 *	  6) inside a background worker connected as the role that asked.
 *
 *	  1. Preparing training data (dataset.c), read as that role.
 *	  2. Training: PPO with libtorch (ppo.c), warm-started from the active
 *		 model's weights and Adam state unless full or there is none.
 *	  3. Validating: the registry's checks, libtorch against the C forward
 *		 pass, and holdout backtests of the candidate and the champion.
 *	  4. Deploying through the agent's gate, in one transaction with the
 *		 archive, the history, retention and the run's final state.
 *
 * Every step logs one line and updates the run row in its own committed
 * transaction, so psql sees live progress.  Registry rows and large objects
 * are written as the extension owner, through calls of rl_mlops functions
 * (each pinned to search_path pg_catalog, pg_temp) and statements whose
 * every function and operator is schema-qualified.  The source relation is
 * read as the requester in a transaction of its own, as a security-
 * restricted operation whose setting changes are undone (owner.c): code in
 * a view or a row-level security policy cannot change what the owner's
 * statements resolve to.  Any error ends the run "failed" (or "cancelled"
 * after SIGTERM) and leaves the active model untouched.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "backtest.h"
#include "checkpoint.h"
#include "guc.h"
#include "lo.h"
#include "owner.h"
#include "trainer/dataset.h"
#include "trainer/net_io.h"
#include "trainer/ppo.h"
#include "trainer/trainer.h"

#define AGREEMENT_OBSERVATIONS 1024
#define AGREEMENT_TOLERANCE 1e-5

/* What libtorch itself takes in a worker, data aside (bench/train). */
#define RL_TORCH_BASE_MEMORY (200.0 * 1024 * 1024)

/* An agent's settings, as the run reads them once at the start. */
typedef struct AgentConf
{
	RlSourceConf source;
	int32		hidden;
	int32		initial_epochs;
	int32		incremental_epochs;
	int32		episode_length;
	double		cost;
	double		learning_rate;
	double		gamma;
	double		gae_lambda;
	double		clip_range;
	int32		update_passes;
	int32		minibatch_size;
	double		value_coef;
	double		entropy_coef;
	double		max_grad_norm;
	int64		seed;
	int32		threads;
	char	   *deploy_gate;
	double		gate_min_delta;
} AgentConf;

/* The active model when the run started, if any. */
typedef struct Champion
{
	char	   *version;
	RlCheckpoint *ckpt;
	RlWeights	weights;
} Champion;

/* State of the run shared by the steps. */
typedef struct RunState
{
	int64		run_id;
	const char *agent;
	AgentConf	conf;
	RlArch		arch;
	Champion   *champion;		/* NULL if no model is active */
	RlDataset  *data;
	double		sigma;
	int32		epochs;
	bool		warm_start;
	char		torch_version[64];
} RunState;

static MemoryContext run_cxt;

/* Start a transaction with SPI and a snapshot, allocating in run_cxt. */
static void
xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(run_cxt);
}

/* Commit what xact_begin started. */
static void
xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(run_cxt);
}

/* Run a registry statement as the extension owner; returns rows processed. */
static uint64
owner_sql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	RlSavedUser saved = rl_become_owner();
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc < 0)
		elog(ERROR, "rl_mlops: registry statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	rl_restore_user(saved);
	/* SPI leaves its own procedure context current */
	MemoryContextSwitchTo(run_cxt);
	return SPI_processed;
}

/* Column "col" (1-based) of the first result row, as text (NULL if null). */
static char *
result_text(int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(run_cxt, v) : NULL;
}

/* Set the run's state in its own transaction. */
static void
set_run_state(int64 run_id, const char *state)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(run_id), CStringGetTextDatum(state)};

	xact_begin();
	owner_sql("SELECT rl_mlops._run_progress($1, $2)", 2, types, values, NULL);
	xact_commit();
	pgstat_report_activity(STATE_RUNNING, psprintf("rl_mlops run " INT64_FORMAT ": %s",
												   run_id, state));
}

/*
 * Insert the run row (rl_mlops._begin_run, under the agent's row lock).
 * Returns the run id, or the id of the run that answers the request with
 * *already set, or 0 with req->message set when there is nothing to run.
 */
static int64
begin_run(RlRunRequest *req, bool *already)
{
	Oid			types[7] = {TEXTOID, TEXTOID, BOOLOID, NAMEOID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[7];
	bool		isnull;
	int64		run_id;

	*already = false;
	xact_begin();
	values[0] = CStringGetTextDatum(req->agent);
	values[1] = CStringGetTextDatum(req->trigger);
	values[2] = BoolGetDatum(req->full);
	/* the role that asked (catalog access needs the transaction) */
	values[3] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[4] = Int32GetDatum(MyProcPid);
	values[5] = TimestampTzGetDatum(MyStartTimestamp);
	values[6] = Int64GetDatum(req->seen_run_id);
	PG_TRY();
	{
		owner_sql("SELECT run_id, already_running FROM rl_mlops._begin_run($1, $2, $3, $4, $5, $6, $7)",
				  7, types, values, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(run_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		snprintf(req->message, sizeof(req->message), "%s", edata->message);
		return 0;
	}
	PG_END_TRY();
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*already = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	xact_commit();
	return run_id;
}

/* Column "name" of the current SPI result's first row (never NULL). */
static Datum
result_column(const char *name)
{
	int			col = SPI_fnumber(SPI_tuptable->tupdesc, name);
	bool		isnull;
	Datum		d;

	if (col <= 0)
		elog(ERROR, "column \"%s\" of rl_mlops.agents does not exist", name);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	if (isnull)
		elog(ERROR, "column \"%s\" of rl_mlops.agents is null", name);
	return d;
}

/* Read the agent's settings (as the owner; the caller has SPI). */
static void
load_agent_conf(const char *agent, AgentConf *c)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};

	owner_sql("SELECT * FROM rl_mlops._agent($1)", 1, types, values, NULL);
	c->source.agent = agent;
	c->source.relid = DatumGetObjectId(result_column("source"));
	c->source.symbol_column = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "symbol_column"));
	c->source.time_column = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "time_column"));
	c->source.price_column = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "price_column"));
	c->source.features_column = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "features_column"));
	c->source.n_features = DatumGetInt32(result_column("n_features"));
	c->source.window = DatumGetInt32(result_column("window_size"));
	c->source.data_window = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "data_window"));
	c->source.holdout_fraction = DatumGetFloat8(result_column("holdout_fraction"));
	c->hidden = DatumGetInt32(result_column("hidden_size"));
	c->initial_epochs = DatumGetInt32(result_column("initial_epochs"));
	c->incremental_epochs = DatumGetInt32(result_column("incremental_epochs"));
	c->episode_length = DatumGetInt32(result_column("episode_length"));
	c->cost = DatumGetFloat8(result_column("transaction_cost"));
	c->learning_rate = DatumGetFloat8(result_column("learning_rate"));
	c->gamma = DatumGetFloat8(result_column("gamma"));
	c->gae_lambda = DatumGetFloat8(result_column("gae_lambda"));
	c->clip_range = DatumGetFloat8(result_column("clip_range"));
	c->update_passes = DatumGetInt32(result_column("update_passes"));
	c->minibatch_size = DatumGetInt32(result_column("minibatch_size"));
	c->value_coef = DatumGetFloat8(result_column("value_coef"));
	c->entropy_coef = DatumGetFloat8(result_column("entropy_coef"));
	c->max_grad_norm = DatumGetFloat8(result_column("max_grad_norm"));
	c->seed = DatumGetInt64(result_column("seed"));
	c->threads = DatumGetInt32(result_column("threads"));
	c->deploy_gate = result_text(SPI_fnumber(SPI_tuptable->tupdesc, "deploy_gate"));
	c->gate_min_delta = DatumGetFloat8(result_column("gate_min_delta"));
}

/* The active model, parsed and checked, or NULL (as the owner). */
static Champion *
load_champion(const char *agent, const RlArch *arch)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	Champion   *champ;
	RlSavedUser saved;
	char	   *buf;
	Size		len;

	if (owner_sql("SELECT version, checkpoint, sha256 FROM rl_mlops.models"
				  " WHERE agent OPERATOR(pg_catalog.=) $1"
				  "   AND state OPERATOR(pg_catalog.=) 'active'", 1, types, values, NULL) == 0)
		return NULL;
	champ = palloc0(sizeof(Champion));
	champ->version = result_text(1);
	saved = rl_become_owner();
	buf = rl_lo_read_verified((Oid) strtoul(result_text(2), NULL, 10), result_text(3), &len);
	rl_restore_user(saved);
	champ->ckpt = rl_checkpoint_parse(buf, len, len);
	rl_checkpoint_check_arch(champ->ckpt, arch, false);
	rl_checkpoint_weights(champ->ckpt, &champ->weights);
	return champ;
}

/* Progress after each epoch: a LOG line and the run row. */
static void
on_epoch(void *arg, const RlEpochResult *r)
{
	RunState   *rs = (RunState *) arg;
	Oid			types[4] = {INT8OID, INT4OID, FLOAT8OID, FLOAT8OID};
	Datum		values[4];

	ereport(LOG,
			(errmsg("rl_mlops: run " INT64_FORMAT " epoch %d/%d: loss %.6f, %.0f samples/s, mean episode return %.4f",
					rs->run_id, r->epoch, rs->epochs, r->loss, r->samples_per_second,
					r->mean_episode_return)));
	values[0] = Int64GetDatum(rs->run_id);
	values[1] = Int32GetDatum(r->epoch);
	values[2] = Float8GetDatum(r->loss);
	values[3] = Float8GetDatum(r->samples_per_second);
	xact_begin();
	owner_sql("SELECT rl_mlops._run_progress($1, 'training', $2, $3, $4)",
			  4, types, values, NULL);
	xact_commit();
}

/* Append "name": {summary} to a JSON object under construction. */
static void
append_summary(StringInfo js, const char *name, const RlBacktestSummary *s)
{
	appendStringInfo(js, "\"%s\": {\"steps\": " INT64_FORMAT
					 ", \"total_log_return\": %.10g, \"sharpe\": %.10g"
					 ", \"max_drawdown\": %.10g, \"turnover\": %.10g"
					 ", \"buy_hold_log_return\": %.10g}",
					 name, (int64) s->n_steps, s->total_log_return, s->sharpe,
					 s->max_drawdown, s->turnover, s->buy_hold_log_return);
}

/* Greedy backtest of some weights on every symbol's holdout tail. */
static RlBacktestSummary
holdout_backtest(const RunState *rs, const RlWeights *w, double sigma)
{
	RlDataset  *ds = rs->data;
	RlBacktestRange *ranges = palloc(ds->n_series * sizeof(RlBacktestRange));
	float	   *work = palloc(RL_BACKTEST_WORK_FLOATS(&w->arch) * sizeof(float));
	RlBacktestSummary sum;
	char		err[RL_ENV_ERRLEN];

	for (int i = 0; i < ds->n_series; i++)
	{
		ranges[i].series = i;
		ranges[i].t_from = ds->n_train[i] - 1;
		ranges[i].t_to = ds->n_prices[i] - 2;
	}
	if (rl_backtest_multi(w, ds->series, ds->n_series, ranges, ds->n_series, sigma,
						  rs->conf.cost, ds->periods_per_year, work, &sum, err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("holdout backtest failed"),
				 errdetail("%s", err)));
	return sum;
}

/*
 * Largest difference between libtorch's forward pass and the C one over
 * holdout observations: serving uses the C one, so they must agree.
 */
static double
forward_agreement(const RunState *rs, RlTorchNet *net, const RlWeights *w)
{
	RlDataset  *ds = rs->data;
	int32		obs_dim = rs->arch.obs_dim;
	float	   *obs = palloc(AGREEMENT_OBSERVATIONS * obs_dim * sizeof(float));
	float	   *probs = palloc(AGREEMENT_OBSERVATIONS * RL_N_ACTIONS * sizeof(float));
	float	   *values = palloc(AGREEMENT_OBSERVATIONS * sizeof(float));
	float	   *scratch = palloc(RL_FORWARD_SCRATCH(&rs->arch) * sizeof(float));
	char		err[RL_TORCH_ERRLEN];
	int64		n = 0;
	double		maxdiff = 0;

	for (int i = 0; i < ds->n_series && n < AGREEMENT_OBSERVATIONS; i++)
		for (int64 t = ds->n_train[i] - 1; t <= ds->n_prices[i] - 2 && n < AGREEMENT_OBSERVATIONS; t++)
		{
			if (rl_env_observation(&ds->series[i], rs->arch.window, rs->arch.n_features,
								   rs->sigma, t, (int32) (n % 3) - 1,
								   obs + n * obs_dim, err) != RL_ENV_OK)
				elog(ERROR, "could not build an observation: %s", err);
			n++;
		}
	if (rl_torch_forward(net, obs, n, probs, values, err) != RL_TORCH_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("libtorch forward pass failed"),
				 errdetail("%s", err)));
	for (int64 i = 0; i < n; i++)
	{
		float		p[RL_N_ACTIONS];
		float		v;

		rl_forward(w, obs + i * obs_dim, p, &v, scratch);
		for (int a = 0; a < RL_N_ACTIONS; a++)
			maxdiff = Max(maxdiff, fabs(p[a] - probs[i * RL_N_ACTIONS + a]));
		maxdiff = Max(maxdiff, fabs(v - values[i]));
	}
	return maxdiff;
}

/* Does the candidate pass the agent's deployment gate? */
static bool
gate_passes(const RunState *rs, const RlBacktestSummary *cand,
			const RlBacktestSummary *champ, char **why)
{
	const char *gate = rs->conf.deploy_gate;
	double		delta = rs->conf.gate_min_delta;

	if (strcmp(gate, "valid") == 0 || champ == NULL)
	{
		*why = psprintf("gate %s: passed", champ ? gate : "(no active model)");
		return true;
	}
	if (strcmp(gate, "not_worse") == 0 ? cand->sharpe >= champ->sharpe - delta
		: cand->sharpe > champ->sharpe + delta)
	{
		*why = psprintf("gate %s: holdout Sharpe %.4f against %.4f (min change %g)",
						gate, cand->sharpe, champ->sharpe, delta);
		return true;
	}
	*why = psprintf("gate %s: holdout Sharpe %.4f does not beat %.4f (min change %g)",
					gate, cand->sharpe, champ->sharpe, delta);
	return false;
}

/* Final state of the run, in the caller's transaction (as the owner). */
static void
finish_run(const RunState *rs, const char *state, const char *error,
		   const char *version)
{
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', 'n', 'n'};

	values[0] = Int64GetDatum(rs->run_id);
	values[1] = CStringGetTextDatum(state);
	if (error)
	{
		values[2] = CStringGetTextDatum(error);
		nulls[2] = ' ';
	}
	if (version)
	{
		values[3] = CStringGetTextDatum(version);
		nulls[3] = ' ';
	}
	owner_sql("SELECT rl_mlops._finish_run($1, $2, $3, $4)", 4, types, values, nulls);
}

/*
 * Bytes a run will hold at its peak, estimated from the data read and the
 * network: the series, one stored observation per training decision (the
 * rollout keeps them for the PPO update, which may copy them once more),
 * per-decision and per-episode buffers, and the parameters with their
 * gradients, Adam moments and two serialised copies, on top of what
 * libtorch itself takes.
 */
static double
estimated_memory(const RunState *rs)
{
	const RlArch *a = &rs->arch;
	double		params = (double) a->hidden * (a->obs_dim + 1) +
		(double) a->hidden * (a->hidden + 1) +
		(double) RL_N_ACTIONS * (a->hidden + 1) + (a->hidden + 1);
	double		rows = 0;
	double		decisions = (double) rs->data->train_decisions;
	double		episodes = decisions / Max(rs->conf.episode_length, 1) + rs->data->n_series;

	for (int i = 0; i < rs->data->n_series; i++)
		rows += rs->data->n_prices[i];
	return RL_TORCH_BASE_MEMORY +
		rows * (2.0 * (sizeof(double) * 3 + sizeof(float) * a->n_features)) +
		decisions * (2.0 * sizeof(float) * a->obs_dim + 7 * sizeof(float)) +
		episodes * sizeof(float) * (a->obs_dim + RL_N_ACTIONS + 1) +
		params * sizeof(float) * 6;
}

/* Refuse, before training, a run that would need more than the setting. */
static void
check_memory(const RunState *rs)
{
	double		need = estimated_memory(rs);
	Size		limit = rl_max_training_memory_bytes();

	if (need > (double) limit)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("training run of agent \"%s\" would need about %.0f MB, more than rl_mlops.max_training_memory (%zu MB)",
						rs->agent, need / (1024.0 * 1024.0), limit / (1024 * 1024)),
				 errdetail("%d symbols, " INT64_FORMAT " training decisions of %d inputs each, hidden size %d.",
						   rs->data->n_series, rs->data->train_decisions,
						   rs->arch.obs_dim, rs->arch.hidden),
				 errhint("Shorten data_window, or raise rl_mlops.max_training_memory if the machine has the memory.")));
}

/*
 * Steps 1 and 2: data, then PPO.  Returns the trained net; *initial_w gets
 * the weights it started from (the untrained or warm-start network).
 */
static RlTorchNet *
prepare_and_train(RunState *rs, const RlRunRequest *req, double *loss,
				  RlWeights *initial_w)
{
	AgentConf  *c = &rs->conf;
	RlTrainConf tc;
	RlTorchNet *net;
	RlEpochResult last;
	char		err[RL_TORCH_ERRLEN];
	Oid			types[6] = {INT8OID, INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', 'n', ' ', ' '};
	RlRequesterPart requester;

	ereport(LOG, (errmsg("rl_mlops: Step 1: Preparing training data... (agent \"%s\", run " INT64_FORMAT ")",
						 rs->agent, rs->run_id)));
	xact_begin();
	load_agent_conf(rs->agent, c);
	rs->arch.window = c->source.window;
	rs->arch.n_features = c->source.n_features;
	rs->arch.obs_dim = c->source.window + 1 + c->source.n_features;
	rs->arch.hidden = c->hidden;
	rs->arch.n_actions = RL_N_ACTIONS;
	rs->champion = load_champion(rs->agent, &rs->arch);
	rs->warm_start = rs->champion != NULL && !req->full;
	rs->epochs = req->epochs > 0 ? req->epochs :
		rs->warm_start ? c->incremental_epochs : c->initial_epochs;
	xact_commit();

	/* The requester's part, in its own transaction: see the file header. */
	xact_begin();
	requester = rl_begin_as_requester(GetUserId());
	rs->data = rl_dataset_load(&c->source);
	rl_end_as_requester(requester);
	xact_commit();
	if (rs->data->infinite_rows > 0)
		ereport(LOG,
				(errmsg("rl_mlops: run " INT64_FORMAT " left out " INT64_FORMAT " row(s) of the source at time infinity",
						rs->run_id, rs->data->infinite_rows)));
	check_memory(rs);

	if (rs->warm_start)
		rs->sigma = rs->champion->ckpt->sigma;	/* the parent's scale */
	else if (rl_env_sigma(rs->data->train, rs->data->n_series, &rs->sigma, err) != RL_ENV_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot scale the training returns"),
				 errdetail("%s", err)));

	values[0] = Int64GetDatum(rs->run_id);
	values[1] = Int32GetDatum(rs->epochs);
	values[2] = Int32GetDatum((int32) rs->data->train_decisions);
	if (rs->warm_start)
	{
		values[3] = CStringGetTextDatum(rs->champion->version);
		nulls[3] = ' ';
	}
	values[4] = DirectFunctionCall1(float8_timestamptz, Float8GetDatum(rs->data->first_epoch));
	values[5] = DirectFunctionCall1(float8_timestamptz, Float8GetDatum(rs->data->last_epoch));
	xact_begin();
	owner_sql("SELECT rl_mlops._run_data($1, $2, $3, $4, $5, $6)", 6, types, values, nulls);
	xact_commit();
	ereport(LOG,
			(errmsg("rl_mlops: Training data prepared: %d symbols, " INT64_FORMAT " training and " INT64_FORMAT " holdout decisions, sigma %.6g",
					rs->data->n_series, rs->data->train_decisions,
					rs->data->holdout_decisions, rs->sigma)));

	ereport(LOG,
			(errmsg("rl_mlops: Step 2: Training model... (%s, %d epochs)",
					rs->warm_start ? psprintf("incremental from %s", rs->champion->version)
					: "from scratch", rs->epochs)));
	pgstat_report_activity(STATE_RUNNING, psprintf("rl_mlops run " INT64_FORMAT ": training",
												   rs->run_id));
	if (rl_torch_version(rs->torch_version, sizeof(rs->torch_version), err) != RL_TORCH_OK ||
		rl_torch_set_threads(c->threads, err) != RL_TORCH_OK ||
		rl_torch_net_create(&rs->arch, (uint64) c->seed, (float) c->learning_rate, &net, err) != RL_TORCH_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("libtorch could not build the network"),
				 errdetail("%s", err)));
	if (rs->warm_start)
		rl_net_load(net, rs->champion->ckpt);
	rl_net_weights(net, &rs->arch, initial_w);

	memset(&tc, 0, sizeof(tc));
	tc.arch = rs->arch;
	tc.epochs = rs->epochs;
	tc.episode_length = c->episode_length;
	tc.cost = c->cost;
	tc.gamma = c->gamma;
	tc.gae_lambda = c->gae_lambda;
	tc.seed = (uint64) c->seed;
	tc.ppo.lr = (float) c->learning_rate;
	tc.ppo.clip = (float) c->clip_range;
	tc.ppo.value_coef = (float) c->value_coef;
	tc.ppo.entropy_coef = (float) c->entropy_coef;
	tc.ppo.max_grad_norm = (float) c->max_grad_norm;
	tc.ppo.update_passes = c->update_passes;
	tc.ppo.minibatch = c->minibatch_size;
	last = rl_ppo_train(net, &tc, rs->data->train, rs->data->n_series, rs->sigma,
						on_epoch, rs);
	*loss = last.loss;
	return net;
}

/*
 * Record one more check of a version (rl_mlops._record_check); true if the
 * version is still 'validated' after it.
 */
static bool
record_check(const char *agent, const char *version, const char *check,
			 bool ok, const char *message)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID};
	Datum		values[5];

	values[0] = CStringGetTextDatum(agent);
	values[1] = CStringGetTextDatum(version);
	values[2] = CStringGetTextDatum(check);
	values[3] = BoolGetDatum(ok);
	values[4] = CStringGetTextDatum(message);
	owner_sql("SELECT rl_mlops._record_check($1, $2, $3, $4, $5)", 5, types, values, NULL);
	return strcmp(result_text(1), "validated") == 0;
}

/*
 * Step 3: register the candidate (as a new version) and validate it.
 * Returns its version; *valid says whether every check passed.
 */
static char *
register_and_validate(RunState *rs, RlTorchNet *net, double loss,
					  const RlBacktestSummary *initial, RlBacktestSummary *cand,
					  RlBacktestSummary *champ, bool *valid)
{
	Oid			types[10] = {TEXTOID, TEXTOID, BYTEAOID, INT8OID, TEXTOID,
	INT4OID, FLOAT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', 'n', ' ', ' ', ' ', ' ', ' '};
	char	   *version;
	bytea	   *bytes;
	RlCheckpoint *parsed;
	RlWeights	w;
	double		diff;
	bool		agree;
	StringInfoData js;

	ereport(LOG, (errmsg("rl_mlops: Step 3: Validating new model...")));
	set_run_state(rs->run_id, "validating");

	xact_begin();
	values[0] = CStringGetTextDatum(rs->agent);
	owner_sql("SELECT rl_mlops._lock_agent($1)", 1, types, values, NULL);
	owner_sql("SELECT rl_mlops._new_version($1)", 1, types, values, NULL);
	version = result_text(1);

	/* The bytes serving will read: parse them back for the C forward pass. */
	bytes = rl_checkpoint_serialize(rl_net_checkpoint(net, &rs->arch, rs->sigma, version));
	parsed = rl_checkpoint_parse(VARDATA(bytes), VARSIZE(bytes) - VARHDRSZ,
								 VARSIZE(bytes) - VARHDRSZ);
	rl_checkpoint_check_arch(parsed, &rs->arch, true);
	rl_checkpoint_weights(parsed, &w);
	diff = forward_agreement(rs, net, &w);
	agree = diff <= AGREEMENT_TOLERANCE;
	*cand = holdout_backtest(rs, &w, rs->sigma);
	if (rs->champion)
		*champ = holdout_backtest(rs, &rs->champion->weights, rs->champion->ckpt->sigma);

	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	append_summary(&js, "holdout", cand);
	appendStringInfoString(&js, ", ");
	append_summary(&js, "initial", initial);
	if (rs->champion)
	{
		appendStringInfoString(&js, ", ");
		append_summary(&js, "champion", champ);
		appendStringInfoString(&js, ", \"champion_version\": ");
		escape_json(&js, rs->champion->version);
	}
	appendStringInfo(&js, ", \"forward_max_diff\": %.6g, \"sigma\": %.17g"
					 ", \"periods_per_year\": %.6g, \"symbols\": %d"
					 ", \"train_decisions\": " INT64_FORMAT
					 ", \"holdout_decisions\": " INT64_FORMAT
					 ", \"warm_start\": %s, \"libtorch\": ",
					 diff, rs->sigma, rs->data->periods_per_year, rs->data->n_series,
					 rs->data->train_decisions, rs->data->holdout_decisions,
					 rs->warm_start ? "true" : "false");
	escape_json(&js, rs->torch_version);
	appendStringInfoChar(&js, '}');

	values[1] = CStringGetTextDatum(version);
	values[2] = PointerGetDatum(bytes);
	values[3] = Int64GetDatum(rs->run_id);
	if (rs->warm_start)
	{
		values[4] = CStringGetTextDatum(rs->champion->version);
		nulls[4] = ' ';
	}
	values[5] = Int32GetDatum(rs->epochs);
	values[6] = Float8GetDatum(loss);
	values[7] = DirectFunctionCall1(float8_timestamptz, Float8GetDatum(rs->data->first_epoch));
	values[8] = DirectFunctionCall1(float8_timestamptz, Float8GetDatum(rs->data->last_epoch));
	values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(js.data));
	owner_sql("SELECT rl_mlops._register_trained($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
			  10, types, values, nulls);
	owner_sql("SELECT rl_mlops.validate_model($1, $2)", 2, types, values, NULL);

	/* libtorch and the C forward pass must agree: one more recorded check. */
	*valid = record_check(rs->agent, version, "libtorch_agreement", agree,
						  psprintf("max |libtorch - C| over holdout observations %.3g (tolerance %g)",
								   diff, AGREEMENT_TOLERANCE));
	xact_commit();

	if (*valid)
		ereport(LOG, (errmsg("rl_mlops: Model checkpoint_%s.safetensors validated successfully (holdout log return %.4f, Sharpe %.3f)",
							 version, cand->total_log_return, cand->sharpe)));
	return version;
}

/* The whole run after begin_run; errors propagate to the caller. */
static void
run_pipeline(RunState *rs, const RlRunRequest *req)
{
	RlTorchNet *net;
	RlWeights	initial_w;
	RlBacktestSummary initial;
	RlBacktestSummary cand;
	RlBacktestSummary champ;
	double		loss;
	char	   *version;
	char	   *why;
	bool		valid;

	ereport(LOG, (errmsg("rl_mlops: Starting retraining of agent \"%s\" (run " INT64_FORMAT ", %s)",
						 rs->agent, rs->run_id, req->trigger)));
	net = prepare_and_train(rs, req, &loss, &initial_w);
	initial = holdout_backtest(rs, &initial_w, rs->sigma);
	ereport(LOG, (errmsg("rl_mlops: Model trained: loss %.6f", loss)));

	version = register_and_validate(rs, net, loss, &initial, &cand, &champ, &valid);
	rl_torch_net_free(net);
	if (!valid)
	{
		xact_begin();
		finish_run(rs, "rejected", psprintf("model version %s failed validation", version), version);
		xact_commit();
		ereport(LOG, (errmsg("rl_mlops: Model %s failed validation", version)));
		ereport(LOG, (errmsg("rl_mlops: Keeping current model active")));
		return;
	}
	if (!gate_passes(rs, &cand, rs->champion ? &champ : NULL, &why))
	{
		xact_begin();
		/* the gate is the last check: record it, so retention removes it */
		(void) record_check(rs->agent, version, "deploy_gate", false, why);
		finish_run(rs, "rejected", why, version);
		xact_commit();
		ereport(LOG, (errmsg("rl_mlops: Model %s not deployed: %s", version, why)));
		ereport(LOG, (errmsg("rl_mlops: Keeping current model active")));
		return;
	}
	if (rl_trainer_stop_requested)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("training run cancelled before deployment")));

	ereport(LOG, (errmsg("rl_mlops: Step 4: Deploying new model...")));
	set_run_state(rs->run_id, "deploying");
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		values[3];
		const char *pause;

		values[0] = CStringGetTextDatum(rs->agent);
		values[1] = CStringGetTextDatum(version);
		values[2] = CStringGetTextDatum(psprintf("retrain run " INT64_FORMAT " (%s; %s)",
												 rs->run_id, req->trigger, why));
		xact_begin();
		owner_sql("SELECT rl_mlops.deploy_model($1, $2, $3)", 3, types, values, NULL);
		finish_run(rs, "succeeded", NULL, version);
		/* tests only: hold the deployment open while a test holds the lock */
		pause = GetConfigOption("rl_mlops.test_pause_before_deploy_commit", true, false);
		if (pause != NULL && strcmp(pause, "on") == 0)
			owner_sql("SELECT pg_catalog.pg_advisory_xact_lock(1380732236)", 0, NULL, NULL, NULL);
		xact_commit();
	}
	ereport(LOG, (errmsg("rl_mlops: Deployed model version %s", version)));
	ereport(LOG, (errmsg("rl_mlops: Retraining complete! New model %s deployed", version)));
}

/* Record a failed or cancelled run after an error, outside any transaction. */
static void
record_failure(RunState *rs)
{
	ErrorData  *edata;
	bool		cancelled;
	char	   *message;

	MemoryContextSwitchTo(run_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(run_cxt);

	cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
	message = edata->detail ? psprintf("%s: %s", edata->message, edata->detail)
		: edata->message;
	ereport(LOG, (errmsg("rl_mlops: Training %s: %s", cancelled ? "cancelled" : "failed", message)));
	ereport(LOG, (errmsg("rl_mlops: Keeping current model active")));
	xact_begin();
	finish_run(rs, cancelled ? "cancelled" : "failed", message, NULL);
	xact_commit();
}

/* Background worker entry point of a training run (retrain()). */
void
rl_trainer_run_main(Datum main_arg)
{
	dsm_segment *seg;
	RlRunRequest *shared;
	RlRunRequest req;
	RunState	rs;
	bool		already;

	rl_trainer_start();

	/*
	 * Registry statements run as the extension owner: never resolve their
	 * names through the requester's search_path (ALTER ROLE ... SET).  They
	 * are schema-qualified as well; this is the second line of defence.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	run_cxt = AllocSetContextCreate(TopMemoryContext, "rl_mlops run",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(run_cxt);

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller is gone: nothing was asked */
	shared = (RlRunRequest *) dsm_segment_address(seg);
	memcpy(&req, shared, sizeof(req));

	memset(&rs, 0, sizeof(rs));
	rs.agent = req.agent;
	rs.run_id = begin_run(&req, &already);

	shared->run_id = rs.run_id;
	shared->already_running = already;
	memcpy(shared->message, req.message, sizeof(shared->message));
	pg_write_barrier();
	shared->answered = true;
	dsm_detach(seg);
	if (rs.run_id == 0 || already)
		proc_exit(0);

	PG_TRY();
	{
		run_pipeline(&rs, &req);
	}
	PG_CATCH();
	{
		record_failure(&rs);
	}
	PG_END_TRY();
	proc_exit(0);
}
