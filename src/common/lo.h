/*-------------------------------------------------------------------------
 *
 * lo.h
 *	  Checkpoints in and out of large objects, in chunks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_LO_H
#define RL_LO_H

extern Oid	rl_lo_write(const char *buf, Size len);
extern char *rl_lo_read(Oid loid, Size max_size, Size *len);
extern char *rl_lo_read_verified(Oid loid, const char *sha256, Size *len);

#endif							/* RL_LO_H */
