/*-------------------------------------------------------------------------
 *
 * trainer_main.c
 *	  What every trainer worker does first: signals, then a database
 *	  connection as the role that asked for the work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/acl.h"

#include "trainer/trainer.h"

PG_MODULE_MAGIC;

/* Set by SIGTERM (cancel_retrain, pg_terminate_backend, shutdown). */
volatile sig_atomic_t rl_trainer_stop_requested = false;

/*
 * SIGTERM only sets a flag: the default background worker handler would
 * ereport(FATAL) from inside libtorch, and die() would make the next
 * CHECK_FOR_INTERRUPTS exit before the run could record "cancelled".
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	rl_trainer_stop_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Set up signals and connect as the role that asked for the work. */
RlWorkerArgs
rl_trainer_start(void)
{
	RlWorkerArgs args;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	/*
	 * A run allocates and frees arrays of millions of entries; glibc's
	 * adaptive threshold would move them from mmap to the heap, whose freed
	 * holes stay resident.  A fixed threshold gives each back when freed.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();
	/*
	 * Connect as the caller's login role (a role reached by SET ROLE may be
	 * NOLOGIN), then become the caller's current role, as SET ROLE would.
	 */
	BackgroundWorkerInitializeConnectionByOid(args.database_id,
											  args.session_role_id, 0);
	if (args.role_id != args.session_role_id)
	{
		/* superuser_arg() reads the catalog: it needs a transaction */
		StartTransactionCommand();
		SetCurrentRoleId(args.role_id, superuser_arg(args.role_id));
		CommitTransactionCommand();
	}
	/* rl_mlops.so registers the settings this library reads (guc.h) */
	load_file("$libdir/rl_mlops", false);
	return args;
}

/* Should-stop callback handed to the libtorch wrapper between batches. */
bool
rl_trainer_should_stop(void *arg)
{
	return rl_trainer_stop_requested;
}
