/*-------------------------------------------------------------------------
 *
 * trainer.h
 *	  Entry points and shared helpers of rl_mlops_trainer.so, the library
 *	  loaded only inside trainer background workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TRAINER_H
#define RL_TRAINER_H

#include "worker_protocol.h"

/* Background worker entry points (bgw_function_name). */
extern PGDLLEXPORT void rl_trainer_check_main(Datum main_arg);
extern PGDLLEXPORT void rl_trainer_run_main(Datum main_arg);

extern volatile sig_atomic_t rl_trainer_stop_requested;

extern RlWorkerArgs rl_trainer_start(void);
extern bool rl_trainer_should_stop(void *arg);

#endif							/* RL_TRAINER_H */
