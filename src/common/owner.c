/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Running a piece of C code as the extension's owner.
 *
 * The registry tables and the checkpoint large objects belong to the role
 * that created the extension.  C code that must read or write them on
 * behalf of a less privileged caller (a training worker connected as the
 * role that asked for the run) switches to that owner for exactly those
 * statements, the way a SECURITY DEFINER function would.  An error inside
 * needs no cleanup: transaction abort restores the outer user.
 *
 * The opposite direction matters as much: code of other roles (a view, a
 * row-level security policy, a function they call) runs whenever a user
 * relation is read, and it must not change what the owner's statements
 * resolve to afterwards.  Such reads are wrapped in rl_begin_as_requester /
 * rl_end_as_requester, the way PostgreSQL builds an index or refreshes a
 * materialized view with user code in it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "owner.h"

/* The owner of extension rl_mlops, read from pg_extension. */
Oid
rl_extension_owner(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("rl_mlops"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"rl_mlops\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION rl_mlops.")));
	return owner;
}

/* Switch the current user to the extension owner; returns what to restore. */
RlSavedUser
rl_become_owner(void)
{
	RlSavedUser saved;

	GetUserIdAndSecContext(&saved.userid, &saved.sec_context);
	SetUserIdAndSecContext(rl_extension_owner(),
						   saved.sec_context | SECURITY_LOCAL_USERID_CHANGE);
	return saved;
}

/* Go back to the user rl_become_owner saved. */
void
rl_restore_user(RlSavedUser saved)
{
	SetUserIdAndSecContext(saved.userid, saved.sec_context);
}

/*
 * Start reading user relations as "role": a security-restricted operation
 * (no temporary objects, no SET ROLE, no cursors kept open) under a GUC
 * nest level of its own, with search_path pinned for the reading query.
 */
RlRequesterPart
rl_begin_as_requester(Oid role)
{
	RlRequesterPart part;

	GetUserIdAndSecContext(&part.saved.userid, &part.saved.sec_context);
	part.guc_nest_level = NewGUCNestLevel();
	SetUserIdAndSecContext(role, part.saved.sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return part;
}

/*
 * End the requester's part: undo every setting its code changed, even with
 * set_config(..., false), and go back to the user that was current.
 */
void
rl_end_as_requester(RlRequesterPart part)
{
	AtEOXact_GUC(false, part.guc_nest_level);
	SetUserIdAndSecContext(part.saved.userid, part.saved.sec_context);
}
