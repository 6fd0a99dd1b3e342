/*-------------------------------------------------------------------------
 *
 * retrain.c
 *	  rl_mlops.retrain(): start a training run in a trainer background
 *	  worker connected as the calling role, and optionally wait for it.
 *
 * The worker, not this backend, inserts the run row under the agent's row
 * lock in its own committed transaction (rl_mlops._begin_run), so a run is
 * visible to everyone at once and does not depend on the caller's
 * transaction.  This backend waits only for that handshake (async) or for
 * the worker to exit (async => false).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "agent.h"
#include "owner.h"
#include "source_relation.h"
#include "trainer_launch.h"
#include "worker_protocol.h"

PG_FUNCTION_INFO_V1(rl_retrain);
PG_FUNCTION_INFO_V1(rl_retrain_if_due);

/*
 * Raise the errors a caller should get before any worker starts (unknown
 * agent, source dropped, source unreadable by "role"), and return the id of
 * the agent's run in progress (0 if none) and its newest run id.
 */
static int64
check_agent(const char *agent, Oid role, int64 *newest_run_id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	RlSavedUser saved;
	int64		running;
	bool		isnull;
	Oid			relid;

	relid = rl_agent_read(agent)->source.relid;
	rl_source_relation_check(relid, agent);
	if (pg_class_aclcheck(relid, role, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to train agent \"%s\"", agent),
				 errdetail("Training reads the agent's source relation with the privileges of the role that asks for the run, and role \"%s\" cannot read it.",
						   GetUserNameFromId(role, false))));

	SPI_connect();
	saved = rl_become_owner();
	if (SPI_execute_with_args("SELECT COALESCE(pg_catalog.max(id), 0),"
							  "       COALESCE(pg_catalog.max(id) FILTER ("
							  "           WHERE rl_mlops._run_unfinished(state)"
							  "             AND rl_mlops._worker_alive(worker_pid, worker_started_at)), 0)"
							  "  FROM rl_mlops.runs WHERE agent OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rl_mlops.runs");
	*newest_run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	running = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 2, &isnull));
	rl_restore_user(saved);
	SPI_finish();
	return running;
}

/* Wait until the worker answered the request or exited. */
static void
wait_for_answer(RlRunRequest *req, BackgroundWorkerHandle *handle)
{
	for (;;)
	{
		pid_t		pid;

		pg_read_barrier();
		if (req->answered)
			return;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			pg_read_barrier();
			if (req->answered)
				return;
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("rl_mlops trainer worker exited before starting the run"),
					 errhint("The server log has the worker's own messages.")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The final state and error of a run, for the synchronous caller. */
static void
report_finished_run(int64 run_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run_id)};
	RlSavedUser saved;

	SPI_connect();
	saved = rl_become_owner();

	/*
	 * The worker committed the run's end after this statement's snapshot
	 * (and, in REPEATABLE READ, after the transaction's): read it with the
	 * latest one.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute_with_args("SELECT state, produced_version, error"
							  "  FROM rl_mlops.runs WHERE id OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

		if (strcmp(state, "succeeded") == 0)
			ereport(NOTICE,
					(errmsg("run " INT64_FORMAT " succeeded: model version %s deployed",
							run_id, version ? version : "")));
		else
			ereport(WARNING,
					(errmsg("run " INT64_FORMAT " ended %s", run_id, state),
					 error ? errdetail("%s", error) : 0,
					 errhint("The current model stays active.")));
	}
	PopActiveSnapshot();
	rl_restore_user(saved);
	SPI_finish();
}

/*
 * Start a run of the agent with "trigger" in a worker and return its id;
 * unless async, wait for the run to end.  If a run of the agent is already
 * in progress, its id is returned and no worker starts.
 */
static int64
start_run(const char *agent, const char *trigger, bool async, int32 epochs,
		  bool full)
{
	int64		running;
	int64		newest_run_id;
	dsm_segment *seg;
	RlRunRequest *req;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	int64		run_id;

	if (strlen(agent) >= RL_AGENT_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" does not exist", agent)));

	/*
	 * A synchronous caller waits for the worker, which takes row locks of
	 * the registry: if this transaction already holds some, it would wait
	 * for itself.
	 */
	if (!async && TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("retrain(async => false) cannot run in a transaction that has already written data"),
				 errhint("Call it in its own transaction, or use async => true.")));

	running = check_agent(agent, GetUserId(), &newest_run_id);
	if (running != 0)
	{
		ereport(NOTICE,
				(errmsg("agent \"%s\" is already training in run " INT64_FORMAT,
						agent, running)));
		return running;
	}

	seg = dsm_create(sizeof(RlRunRequest), 0);
	req = (RlRunRequest *) dsm_segment_address(seg);
	memset(req, 0, sizeof(*req));
	strlcpy(req->agent, agent, sizeof(req->agent));
	strlcpy(req->trigger, trigger, sizeof(req->trigger));
	req->epochs = epochs;
	req->full = full;
	req->seen_run_id = newest_run_id;

	handle = rl_launch_trainer("rl_trainer_run_main", "rl_mlops trainer",
							   0, UInt32GetDatum(dsm_segment_handle(seg)), &pid);
	PG_TRY();
	{
		wait_for_answer(req, handle);
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();

	run_id = req->run_id;
	if (run_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not start a training run of agent \"%s\"", agent),
				 errdetail("%s", req->message)));
	if (req->already_running)
		ereport(NOTICE,
				(errmsg("agent \"%s\" is already training in run " INT64_FORMAT,
						agent, run_id)));
	else if (!async)
	{
		rl_wait_trainer(handle);
		report_finished_run(run_id);
	}
	dsm_detach(seg);
	return run_id;
}

/* The agent argument, which must not be NULL. */
static char *
agent_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("agent must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

/*
 * retrain(agent, async, epochs, full): a run recorded with trigger
 * 'manual'; NULL arguments mean their defaults.
 */
Datum
rl_retrain(PG_FUNCTION_ARGS)
{
	char	   *agent = agent_arg(fcinfo);
	bool		async = PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1);
	int32		epochs = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	bool		full = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);

	if (!PG_ARGISNULL(2) && (epochs < 1 || epochs > 10000))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("epochs must be between 1 and 10000")));
	PG_RETURN_INT64(start_run(agent, "manual", async, epochs, full));
}

/*
 * Should the agent retrain early because the market drifted?  With
 * retrain_on_drift on and the scheduler enabled, when monitor() found the
 * champion's live market significantly different from its training data
 * after the last retrain, and no run is in progress.
 */
static bool
drifted(const char *agent)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(agent)};
	RlSavedUser saved = rl_become_owner();
	bool		found;

	if (SPI_execute_with_args("SELECT 1 FROM rl_mlops.live_metrics lm"
							  "  JOIN rl_mlops.models m ON m.agent OPERATOR(pg_catalog.=) lm.agent"
							  "   AND m.version OPERATOR(pg_catalog.=) lm.version"
							  "   AND m.state OPERATOR(pg_catalog.=) 'active'"
							  "  JOIN rl_mlops.agents a ON a.name OPERATOR(pg_catalog.=) lm.agent"
							  " WHERE lm.agent OPERATOR(pg_catalog.=) $1 AND a.retrain_on_drift"
							  "   AND a.scheduler_enabled"
							  "   AND lm.drift_detected_at OPERATOR(pg_catalog.>)"
							  "       COALESCE(a.last_retrain_time, '-infinity'::pg_catalog.timestamptz)"
							  "   AND NOT EXISTS (SELECT 1 FROM rl_mlops.runs r"
							  "                    WHERE r.agent OPERATOR(pg_catalog.=) $1"
							  "                      AND rl_mlops._run_unfinished(r.state)"
							  "                      AND rl_mlops._worker_alive(r.worker_pid, r.worker_started_at))",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rl_mlops.live_metrics");
	found = SPI_processed > 0;
	rl_restore_user(saved);
	return found;
}

/*
 * retrain_if_due(agent): what the pg_cron job calls.  retrain_due() (as the
 * owner) decides; a run it starts is recorded with trigger 'schedule'.
 * Returns the decision with "started" (and "run_id").
 */
Datum
rl_retrain_if_due(PG_FUNCTION_ARGS)
{
	char	   *agent = agent_arg(fcinfo);
	Oid			types[3] = {TEXTOID, BOOLOID, INT8OID};
	Datum		values[3] = {CStringGetTextDatum(agent), BoolGetDatum(false), Int64GetDatum(0)};
	char		nulls[3] = {' ', ' ', 'n'};
	RlSavedUser saved;
	Datum		decision;
	bool		due;
	char	   *reason;
	bool		isnull;
	Datum		result;

	SPI_connect();
	saved = rl_become_owner();
	if (SPI_execute_with_args("SELECT d, (d OPERATOR(pg_catalog.->>) 'due')::pg_catalog.bool,"
							  "       d OPERATOR(pg_catalog.->>) 'reason'"
							  "  FROM rl_mlops.retrain_due($1) d",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not decide whether agent \"%s\" is due", agent);
	rl_restore_user(saved);
	decision = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	due = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	reason = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	if (due || drifted(agent))
	{
		const char *trigger = due ? "schedule" : "drift";
		int64		run_id = start_run(agent, trigger, true, 0, false);

		ereport(LOG,
				(errmsg("rl_mlops: Starting automated retraining of agent %s (run " INT64_FORMAT ", %s)",
						agent, run_id,
						due ? reason : "the market drifted from the training data")));
		values[2] = Int64GetDatum(run_id);
		nulls[2] = ' ';
		due = true;
	}
	else
		ereport(LOG,
				(errmsg("rl_mlops: retrain of agent %s not started: %s", agent, reason)));
	values[0] = decision;
	types[0] = JSONBOID;
	values[1] = BoolGetDatum(due);
	if (SPI_execute_with_args("SELECT $1 OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls("
							  "    pg_catalog.jsonb_build_object('started', $2, 'run_id', $3,"
							  "        'reason', CASE WHEN NOT ($1 OPERATOR(pg_catalog.->>) 'due')::pg_catalog.bool AND $2"
							  "                       THEN 'drift since the last retrain' END))",
							  3, types, values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not build the decision of agent \"%s\"", agent);
	result = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											 1, &isnull), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
