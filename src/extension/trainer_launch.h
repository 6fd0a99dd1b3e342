/*-------------------------------------------------------------------------
 *
 * trainer_launch.h
 *	  Starting and waiting for trainer background workers (rl_mlops.so).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TRAINER_LAUNCH_H
#define RL_TRAINER_LAUNCH_H

#include "postmaster/bgworker.h"

extern BackgroundWorkerHandle *rl_launch_trainer(const char *function,
												 const char *type,
												 int64 run_id, Datum main_arg,
												 pid_t *pid);
extern void rl_wait_trainer(BackgroundWorkerHandle *handle);

#endif							/* RL_TRAINER_LAUNCH_H */
