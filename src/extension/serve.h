/*-------------------------------------------------------------------------
 *
 * serve.h
 *	  Serving the active model from SQL (DESIGN section 8): act, policy,
 *	  value, decide and backtest over weights cached per backend.
 *
 * src/serve.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_SERVE_H
#define RL_SERVE_H

/* Register the relcache callback that drops cached weights; from _PG_init. */
extern void rl_serve_init(void);

#endif							/* RL_SERVE_H */
