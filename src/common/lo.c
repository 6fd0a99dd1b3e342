/*-------------------------------------------------------------------------
 *
 * lo.c
 *	  Checkpoints in and out of large objects.
 *
 * Both directions go in chunks through the inversion API, so that neither
 * a checkpoint's size nor lo_get()'s 1 GB limit matters: reading allocates
 * one "huge" buffer of exactly the object's size, after checking it against
 * a cap.  We use the inversion API directly, so we also close
 * pg_largeobject ourselves (close_lo_relation) as lo_close() would at
 * transaction end.  The large object belongs to the current user (the extension owner
 * inside the registry's SECURITY DEFINER functions).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_largeobject.h"
#include "libpq/libpq-fs.h"
#include "storage/large_object.h"

#include "checkpoint.h"
#include "guc.h"
#include "lo.h"

#define RL_LO_CHUNK (1024 * 1024)

/* Store bytes in a new large object and return its oid. */
Oid
rl_lo_write(const char *buf, Size len)
{
	Oid			loid = inv_create(InvalidOid);
	LargeObjectDesc *lo = inv_open(loid, INV_WRITE, CurrentMemoryContext);
	Size		done = 0;

	while (done < len)
	{
		int			n = (int) Min((Size) RL_LO_CHUNK, len - done);

		if (inv_write(lo, buf + done, n) != n)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("could not write checkpoint to large object %u", loid)));
		done += n;
	}
	inv_close(lo);
	close_lo_relation(true);
	return loid;
}

/*
 * Read a whole large object.  A missing object and one larger than
 * max_size are errors that name the object.
 */
char *
rl_lo_read(Oid loid, Size max_size, Size *len)
{
	LargeObjectDesc *lo;
	int64		size;
	char	   *buf;
	Size		done = 0;

	if (!LargeObjectExists(loid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("checkpoint large object %u does not exist", loid),
				 errdetail("The large object was unlinked outside the registry.")));

	lo = inv_open(loid, INV_READ, CurrentMemoryContext);
	size = inv_seek(lo, 0, SEEK_END);
	if (size < 0 || (uint64) size > max_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("checkpoint large object %u is too large", loid),
				 errdetail("It has " INT64_FORMAT " bytes; the limit is %zu bytes.",
						   size, max_size),
				 errhint("Raise rl_mlops.max_checkpoint_size.")));
	inv_seek(lo, 0, SEEK_SET);

	buf = palloc_extended(Max(size, 1), MCXT_ALLOC_HUGE);
	while (done < (Size) size)
	{
		int			n = (int) Min((Size) RL_LO_CHUNK, (Size) size - done);
		int			got = inv_read(lo, buf + done, n);

		if (got <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("could not read checkpoint large object %u", loid)));
		done += got;
	}
	inv_close(lo);
	close_lo_relation(true);
	*len = done;
	return buf;
}

/* Read a checkpoint and refuse it unless its sha256 is the recorded one. */
char *
rl_lo_read_verified(Oid loid, const char *sha256, Size *len)
{
	char	   *buf = rl_lo_read(loid, RL_MAX_CHECKPOINT_BYTES, len);
	char		sha[65];

	rl_sha256_hex(buf, *len, sha);
	if (strcmp(sha, sha256) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checkpoint large object %u does not match its sha256", loid),
				 errdetail("The registry recorded %s; the large object hashes to %s.",
						   sha256, sha)));
	return buf;
}
