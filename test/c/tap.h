/*-------------------------------------------------------------------------
 *
 * tap.h
 *	  TAP output for the plain-C unit tests (test/c, test/torch): one
 *	  "ok N - name" or "not ok N - name" line per check, "# " comment lines,
 *	  and the plan "1..N" printed at the end.  Plain C99, no PostgreSQL
 *	  headers; include it once, from the file that holds main().
 *
 *	  ok(x > 0, "x of case %d is positive", i);
 *	  ok_detail(rc == 0, "the call succeeds", err);
 *	  diag("took %.1f s", secs);
 *	  ...
 *	  return done_testing();
 *
 * test/c/tap.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_TEST_TAP_H
#define RL_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define TAP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TAP_PRINTF(f, a)
#endif

static int	tap_tests = 0;		/* checks so far */
static int	tap_failed = 0;		/* of which failed */

static inline int ok(int cond, const char *fmt,...) TAP_PRINTF(2, 3);
static inline void diag(const char *fmt,...) TAP_PRINTF(1, 2);
static inline void bail_out(const char *fmt,...) TAP_PRINTF(1, 2);

/* One TAP line for a check named by a printf format; returns cond. */
static inline int
ok(int cond, const char *fmt,...)
{
	va_list		ap;

	tap_tests++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

/* A "# " comment line. */
static inline void
diag(const char *fmt,...)
{
	va_list		ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/*
 * A check with a fixed name; when it fails and detail (an error message,
 * say) is not empty, detail follows as a "#   " line.  Returns cond.
 */
static inline int
ok_detail(int cond, const char *name, const char *detail)
{
	ok(cond, "%s", name);
	if (!cond && detail != NULL && detail[0] != '\0')
		diag("  %s", detail);
	return cond;
}

/* Stop the run: a prerequisite failed and later checks would be noise. */
static inline void
bail_out(const char *fmt,...)
{
	va_list		ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(2);
}

/*
 * The plan, "1..N", after the last check, and a comment counting the
 * failures if any; the exit status for main(): 0 if every check passed.
 */
static inline int
done_testing(void)
{
	printf("1..%d\n", tap_tests);
	if (tap_failed > 0)
		diag("%d of %d tests failed", tap_failed, tap_tests);
	fflush(stdout);
	return tap_failed > 0 ? 1 : 0;
}

#endif							/* RL_TEST_TAP_H */
