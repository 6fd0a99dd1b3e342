/*-------------------------------------------------------------------------
 *
 * run_registry.c
 *	  A training run's transactions and every statement it runs against
 *	  the registry, as the extension owner.
 *
 * Each statement is a call of an rl_mlops function (each pinned to
 * search_path pg_catalog, pg_temp) or names every function and operator
 * with its schema, so nothing the requester's code did in its own part of
 * the run (run_train.c) can change what these resolve to.  Every step
 * commits on its own, so psql sees live progress.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "lo.h"
#include "owner.h"
#include "torch/rl_torch.h"
#include "trainer/run.h"

MemoryContext rl_run_cxt;

/* Start a transaction with SPI and a snapshot, allocating in rl_run_cxt. */
void
rl_run_xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(rl_run_cxt);
}

/* Commit what rl_run_xact_begin started. */
void
rl_run_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(rl_run_cxt);
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
	MemoryContextSwitchTo(rl_run_cxt);
	return SPI_processed;
}

/* Column "col" (1-based) of the first result row, as text (NULL if null). */
static char *
result_text(int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(rl_run_cxt, v) : NULL;
}

/*
 * Insert the run row (rl_mlops._begin_run, under the agent's row lock).
 * Returns the run id, or the id of the run that answers the request with
 * *already set, or 0 with req->message set when there is nothing to run.
 */
int64
rl_run_begin(RlRunRequest *req, bool *already)
{
	Oid			types[7] = {TEXTOID, TEXTOID, BOOLOID, NAMEOID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[7];
	bool		isnull;
	int64		run_id;

	*already = false;
	rl_run_xact_begin();
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

		MemoryContextSwitchTo(rl_run_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		snprintf(req->message, sizeof(req->message), "%s", edata->message);
		return 0;
	}
	PG_END_TRY();
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*already = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	rl_run_xact_commit();
	return run_id;
}

/* Set the run's state in its own transaction. */
void
rl_run_set_state(int64 run_id, const char *state)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(run_id), CStringGetTextDatum(state)};

	rl_run_xact_begin();
	owner_sql("SELECT rl_mlops._run_progress($1, $2)", 2, types, values, NULL);
	rl_run_xact_commit();
	pgstat_report_activity(STATE_RUNNING, psprintf("rl_mlops run " INT64_FORMAT ": %s",
												   run_id, state));
}

/*
 * The agent's settings, once for the whole run (the caller has a
 * transaction), and the same settings recorded on the run: the agent's row
 * is locked first (FOR SHARE, by _run_settings, which writes the record),
 * then read with a snapshot taken after the lock, so configure() cannot
 * slip in between and the record is exactly what the run uses.
 */
void
rl_run_read_agent(RunState *rs)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		version[64];
	char		err[RL_TORCH_ERRLEN];
	RlSavedUser saved;

	if (rl_torch_version(version, sizeof(version), err) != RL_TORCH_OK)
		strlcpy(version, "unknown", sizeof(version));
	values[0] = Int64GetDatum(rs->run_id);
	values[1] = CStringGetTextDatum(rs->agent_name);
	values[2] = CStringGetTextDatum(version);
	owner_sql("SELECT rl_mlops._run_settings($1, $2, $3)", 3, types, values, NULL);
	saved = rl_become_owner();
	PushActiveSnapshot(GetTransactionSnapshot());
	rs->agent = rl_agent_read(rs->agent_name);
	PopActiveSnapshot();
	rl_restore_user(saved);
}

/* The active model, parsed and checked, or NULL (as the owner). */
Champion *
rl_run_load_champion(const char *agent, const RlArch *arch)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	Champion   *champ;
	RlSavedUser saved;
	char	   *buf;
	Size		len;
	bool		isnull;
	Oid			checkpoint;

	RlCheckpointKnown known;

	if (owner_sql("SELECT version, checkpoint, sha256, sigma FROM rl_mlops.models"
				  " WHERE agent OPERATOR(pg_catalog.=) $1"
				  "   AND state OPERATOR(pg_catalog.=) 'active'", 1, types, values, NULL) == 0)
		return NULL;
	champ = palloc0(sizeof(Champion));
	champ->version = result_text(1);
	checkpoint = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	known.arch = *arch;
	known.sigma = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 4, &isnull));
	saved = rl_become_owner();
	buf = rl_lo_read_verified(checkpoint, result_text(3), &len);
	rl_restore_user(saved);
	champ->ckpt = rl_checkpoint_parse(buf, len, len, &known);
	rl_checkpoint_check_arch(champ->ckpt, arch, false);
	rl_checkpoint_weights(champ->ckpt, &champ->weights);
	return champ;
}

/* Step 1 done: what the run trains on, and state 'training'. */
void
rl_run_report_data(const RunState *rs)
{
	Oid			types[6] = {INT8OID, INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', 'n', ' ', ' '};

	values[0] = Int64GetDatum(rs->run_id);
	values[1] = Int32GetDatum(rs->epochs);
	values[2] = Int32GetDatum((int32) rs->data->train_decisions);
	if (rs->warm_start)
	{
		values[3] = CStringGetTextDatum(rs->champion->version);
		nulls[3] = ' ';
	}
	values[4] = TimestampTzGetDatum(rs->data->first);
	values[5] = TimestampTzGetDatum(rs->data->last);
	rl_run_xact_begin();
	owner_sql("SELECT rl_mlops._run_data($1, $2, $3, $4, $5, $6)", 6, types, values, nulls);
	rl_run_xact_commit();
}

/* Progress after each epoch: a LOG line and the run row. */
void
rl_run_report_epoch(void *arg, const RlEpochResult *r)
{
	RunState   *rs = (RunState *) arg;
	Oid			types[4] = {INT8OID, INT4OID, FLOAT8OID, FLOAT8OID};
	Datum		values[4];

	ereport(LOG,
			(errmsg("rl_mlops: run " INT64_FORMAT " epoch %d/%d: loss %.6f, %.0f samples/s, mean episode return %.4f, update %.0f us per minibatch step",
					rs->run_id, r->epoch, rs->epochs, r->loss, r->samples_per_second,
					r->mean_episode_return, r->update_us_per_step)));
	values[0] = Int64GetDatum(rs->run_id);
	values[1] = Int32GetDatum(r->epoch);
	values[2] = Float8GetDatum(r->loss);
	values[3] = Float8GetDatum(r->samples_per_second);
	rl_run_xact_begin();
	owner_sql("SELECT rl_mlops._run_progress($1, 'training', $2, $3, $4)",
			  4, types, values, NULL);
	rl_run_xact_commit();
}

/*
 * A new version name for the candidate, under the agent's lock (held until
 * the caller's transaction ends, so no other version can take the name).
 */
char *
rl_run_new_version(const RunState *rs)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(rs->agent_name)};

	owner_sql("SELECT rl_mlops._lock_agent($1)", 1, types, values, NULL);
	owner_sql("SELECT rl_mlops._new_version($1)", 1, types, values, NULL);
	return result_text(1);
}

/*
 * Register the candidate's checkpoint as that version and run the
 * registry's validation on it, in the caller's transaction.
 */
void
rl_run_register(const RunState *rs, const char *version, bytea *checkpoint,
				double loss, const char *metrics)
{
	Oid			types[10] = {TEXTOID, TEXTOID, BYTEAOID, INT8OID, TEXTOID,
	INT4OID, FLOAT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID};
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', 'n', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(rs->agent_name);
	values[1] = CStringGetTextDatum(version);
	values[2] = PointerGetDatum(checkpoint);
	values[3] = Int64GetDatum(rs->run_id);
	if (rs->warm_start)
	{
		values[4] = CStringGetTextDatum(rs->champion->version);
		nulls[4] = ' ';
	}
	values[5] = Int32GetDatum(rs->epochs);
	values[6] = Float8GetDatum(loss);
	values[7] = TimestampTzGetDatum(rs->data->first);
	values[8] = TimestampTzGetDatum(rs->data->last);
	values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(metrics));
	owner_sql("SELECT rl_mlops._register_trained($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
			  10, types, values, nulls);
	owner_sql("SELECT rl_mlops.validate_model($1, $2)", 2, types, values, NULL);
}

/*
 * Record one more check of a version (rl_mlops._record_check); true if the
 * version is still 'validated' after it.
 */
bool
rl_run_record_check(const char *agent, const char *version, const char *check,
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
 * Step 4: deploy the version (or, in deploy_mode 'challenger', add it as a
 * challenger) and end the run 'succeeded', in one transaction.  Returns
 * true if it was deployed.
 */
bool
rl_run_deploy(const RunState *rs, const char *version, const char *reason)
{
	bool		deployed;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	const char *pause;

	values[0] = CStringGetTextDatum(rs->agent_name);
	values[1] = CStringGetTextDatum(version);
	values[2] = CStringGetTextDatum(reason);
	rl_run_xact_begin();
	owner_sql("SELECT rl_mlops._deploy_trained($1, $2, $3)", 3, types, values, NULL);
	deployed = strcmp(result_text(1), "deploy") == 0;
	rl_run_finish(rs, "succeeded", NULL, version);
	/* tests only: hold the deployment open while a test holds the lock */
	pause = GetConfigOption("rl_mlops.test_pause_before_deploy_commit", true, false);
	if (pause != NULL && strcmp(pause, "on") == 0)
		owner_sql(psprintf("SELECT pg_catalog.pg_advisory_xact_lock(%d)", RL_TEST_PAUSE_LOCK),
				  0, NULL, NULL, NULL);
	rl_run_xact_commit();
	return deployed;
}

/* Final state of the run, in the caller's transaction (as the owner). */
void
rl_run_finish(const RunState *rs, const char *state, const char *error,
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
