/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Server settings of rl_mlops.
 *
 * rl_mlops.so registers them.  Both libraries read them by name through
 * the functions below, never through a C variable: each library has its
 * own copy of this file's variables, and only the registering library's
 * copy follows the setting.  Trainer workers load rl_mlops.so first, so
 * the settings exist there too.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_GUC_H
#define RL_GUC_H

#define RL_MAX_CHECKPOINT_BYTES rl_max_checkpoint_bytes()

extern void rl_define_gucs(void);
extern Size rl_max_checkpoint_bytes(void);
extern Size rl_max_training_memory_bytes(void);

#endif							/* RL_GUC_H */
