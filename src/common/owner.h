/*-------------------------------------------------------------------------
 *
 * owner.h
 *	  Running a piece of C code as the extension's owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_OWNER_H
#define RL_OWNER_H

/* What rl_become_owner saved, for rl_restore_user. */
typedef struct RlSavedUser
{
	Oid			userid;
	int			sec_context;
} RlSavedUser;

/* What rl_begin_as_requester saved, for rl_end_as_requester. */
typedef struct RlRequesterPart
{
	RlSavedUser saved;
	int			guc_nest_level;
} RlRequesterPart;

extern Oid	rl_extension_owner(void);
extern RlSavedUser rl_become_owner(void);
extern void rl_restore_user(RlSavedUser saved);
extern RlRequesterPart rl_begin_as_requester(Oid role);
extern void rl_end_as_requester(RlRequesterPart part);

#endif							/* RL_OWNER_H */
