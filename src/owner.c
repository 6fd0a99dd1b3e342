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
