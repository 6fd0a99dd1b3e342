/*-------------------------------------------------------------------------
 *
 * plan_cache.h
 *	  SPI plans kept for the life of a backend, by query text: statements
 *	  that serving and monitor() run for every symbol and call are parsed
 *	  and planned once.
 *
 * Include postgres.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_PLAN_CACHE_H
#define RL_PLAN_CACHE_H

#include "executor/spi.h"

extern SPIPlanPtr rl_cached_plan(const char *query, int nargs, Oid *argtypes);

#endif							/* RL_PLAN_CACHE_H */
