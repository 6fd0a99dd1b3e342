/*-------------------------------------------------------------------------
 *
 * retrain.c
 *	  rl_mlops.retrain(): start a training run in a trainer background
 *	  worker connected as the calling role, and optionally wait for it.
 *
 * The worker, not this backend, takes the agent's advisory lock and
 * inserts the run row in its own committed transaction, so a run is
 * visible to everyone at once and does not depend on the caller's
 * transaction.  This backend waits only for that handshake (async) or for
 * the worker to exit (async => false).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "owner.h"
#include "trainer_launch.h"
#include "trainer_shm.h"

PG_FUNCTION_INFO_V1(rl_retrain);

/*
 * The run in progress for an agent whose worker still holds the agent's
 * lock, or 0.  Also raises the errors a caller should get before any
 * worker starts: unknown agent, unreadable source.
 */
static int64
check_agent_and_running_run(const char *agent, Oid role)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(agent), ObjectIdGetDatum(role)};
	RlSavedUser saved;
	int64		running = 0;
	bool		isnull;
	bool		can_read;

	SPI_connect();
	saved = rl_become_owner();
	if (SPI_execute_with_args("SELECT pg_catalog.has_table_privilege($2, source, 'SELECT')"
							  "  FROM rl_mlops.agents WHERE name = $1",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rl_mlops.agents");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" does not exist", agent),
				 errhint("Create it with rl_mlops.create_agent().")));
	can_read = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	if (!can_read)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to train agent \"%s\"", agent),
				 errdetail("Training reads the agent's source relation with the privileges of the role that asks for the run, and role \"%s\" cannot read it.",
						   GetUserNameFromId(role, false))));

	if (SPI_execute_with_args("SELECT id FROM rl_mlops.runs"
							  " WHERE agent = $1 AND rl_mlops._run_unfinished(state)"
							  "   AND rl_mlops._run_lock_held(agent)"
							  " ORDER BY id DESC LIMIT 1",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read rl_mlops.runs");
	if (SPI_processed > 0)
		running = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
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
	if (SPI_execute_with_args("SELECT state, coalesce(produced_version, ''), coalesce(error, '')"
							  "  FROM rl_mlops.runs WHERE id = $1",
							  1, types, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		char	   *error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

		if (strcmp(state, "succeeded") == 0)
			ereport(NOTICE,
					(errmsg("run " INT64_FORMAT " succeeded: model version %s deployed",
							run_id, version)));
		else
			ereport(WARNING,
					(errmsg("run " INT64_FORMAT " ended %s", run_id, state),
					 *error ? errdetail("%s", error) : 0,
					 errhint("The current model stays active.")));
	}
	PopActiveSnapshot();
	rl_restore_user(saved);
	SPI_finish();
}

/*
 * retrain(agent, async, epochs, full, trigger): start a run and return its
 * id; with async => false, wait for the run to end.  If a run of the agent
 * is already in progress, its id is returned and no worker starts.
 */
Datum
rl_retrain(PG_FUNCTION_ARGS)
{
	char	   *agent;
	bool		async = PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1);
	int32		epochs = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	bool		full = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	char	   *trigger = PG_ARGISNULL(4) ? "manual" : text_to_cstring(PG_GETARG_TEXT_PP(4));
	int64		running;
	dsm_segment *seg;
	RlRunRequest *req;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	int64		run_id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("agent must not be null")));
	agent = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(agent) >= RL_AGENT_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" does not exist", agent)));
	if (!PG_ARGISNULL(2) && (epochs < 1 || epochs > 10000))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("epochs must be between 1 and 10000")));
	if (strcmp(trigger, "manual") != 0 && strcmp(trigger, "schedule") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger must be \"manual\" or \"schedule\"")));

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

	running = check_agent_and_running_run(agent, GetUserId());
	if (running != 0)
	{
		ereport(NOTICE,
				(errmsg("agent \"%s\" is already training in run " INT64_FORMAT,
						agent, running)));
		PG_RETURN_INT64(running);
	}

	seg = dsm_create(sizeof(RlRunRequest), 0);
	req = (RlRunRequest *) dsm_segment_address(seg);
	memset(req, 0, sizeof(*req));
	strlcpy(req->agent, agent, sizeof(req->agent));
	strlcpy(req->trigger, trigger, sizeof(req->trigger));
	req->epochs = epochs;
	req->full = full;

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
	PG_RETURN_INT64(run_id);
}
