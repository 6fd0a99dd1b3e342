/*-------------------------------------------------------------------------
 *
 * source_relation.h
 *	  Opening an agent's source relation by its oid, for serving and for
 *	  the training worker alike.
 *
 * Include postgres.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_SOURCE_RELATION_H
#define RL_SOURCE_RELATION_H

/* The kind of values a source column must hold. */
typedef enum RlSourceColumnKind
{
	RL_COLUMN_SYMBOL,			/* any type */
	RL_COLUMN_TIME,				/* timestamptz, timestamp, date */
	RL_COLUMN_PRICE,			/* numeric, float8, float4, int2, int4, int8 */
	RL_COLUMN_FEATURES			/* float4[], float8[], numeric[] */
} RlSourceColumnKind;

extern void rl_source_relation_check(Oid relid, const char *agent);
extern char *rl_source_relation_lock(Oid relid, const char *agent);
extern void rl_source_column_check(Oid relid, const char *agent,
								   const char *column,
								   RlSourceColumnKind kind);

#endif							/* RL_SOURCE_RELATION_H */
