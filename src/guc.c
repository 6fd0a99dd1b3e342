/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Server settings of rl_mlops.so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "guc.h"

int			rl_max_checkpoint_size_kb = 1024 * 1024;
bool		rl_test_pause_before_deploy_commit = false;

/* Register the settings; called from _PG_init. */
void
rl_define_gucs(void)
{
	DefineCustomIntVariable("rl_mlops.max_checkpoint_size",
							"Largest checkpoint the registry reads, imports or parses.",
							"Checkpoints are parsed in memory; this bounds that memory.",
							&rl_max_checkpoint_size_kb,
							1024 * 1024, 64, 4 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	/*
	 * Tests only: the crash tests kill a training worker while its deploy
	 * transaction is open.  The worker reads this setting by name
	 * (GetConfigOption): its own copy of this variable is never registered.
	 */
	DefineCustomBoolVariable("rl_mlops.test_pause_before_deploy_commit",
							 "Tests only: training runs wait before committing their deployment.",
							 "When on, a training worker that has deployed its model, but not yet committed, "
							 "waits for advisory lock 1380732236 (the one-key form); a session holding "
							 "that lock holds the deployment open.",
							 &rl_test_pause_before_deploy_commit,
							 false,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("rl_mlops");
}
