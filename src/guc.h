/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Server settings of rl_mlops.so.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_GUC_H
#define RL_GUC_H

extern int	rl_max_checkpoint_size_kb;
extern bool rl_test_pause_before_deploy_commit;

#define RL_MAX_CHECKPOINT_BYTES ((Size) rl_max_checkpoint_size_kb * 1024)

extern void rl_define_gucs(void);

#endif							/* RL_GUC_H */
