/*-------------------------------------------------------------------------
 *
 * test_sequential.c
 *	  Standalone tests of the paired always-valid sequential test and
 *	  Holm's correction (src/core/sequential.c).  Prints TAP lines, exits
 *	  non-zero on any failure.  Deterministic: a fixed PRNG, no timing.
 *
 * Built by test/c/Makefile.sequential.
 *
 * test/c/test_sequential.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sequential.h"
#include "tap.h"

/* Relative-or-absolute closeness for doubles. */
static int
near(double a, double b, double tol)
{
	return fabs(a - b) <= tol * (1.0 + fabs(b));
}

/* ---------- a fixed PRNG: splitmix64 seeding xoshiro256** ---------- */

typedef struct Rng
{
	uint64_t	s[4];
} Rng;

/* splitmix64 spreads one seed over the four words. */
static void
rng_seed(Rng *r, uint64_t seed)
{
	int			i;

	for (i = 0; i < 4; i++)
	{
		uint64_t	z = (seed += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		r->s[i] = z ^ (z >> 31);
	}
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static uint64_t
rng_next(Rng *r)
{
	uint64_t	result = rotl(r->s[1] * 5, 7) * 9;
	uint64_t	t = r->s[1] << 17;

	r->s[2] ^= r->s[0];
	r->s[3] ^= r->s[1];
	r->s[1] ^= r->s[2];
	r->s[0] ^= r->s[3];
	r->s[2] ^= t;
	r->s[3] = rotl(r->s[3], 45);
	return result;
}

/* Uniform in (0, 1), never 0 (log is taken of it). */
static double
rng_unif(Rng *r)
{
	return ((double) (rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller (one of the pair; simple and exact). */
static double
rng_norm(Rng *r)
{
	double		u1 = rng_unif(r);
	double		u2 = rng_unif(r);

	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * log Lambda in Johari et al.'s unstandardised form, with mixture variance
 * T = tau2 * v: 1/2 log(v / (v + n T)) + n^2 T m^2 / (2 v (v + n T)).
 */
static double
ref_llr(double n, double m, double v, double tau2)
{
	double		t = tau2 * v;

	return 0.5 * log(v / (v + n * t)) +
		n * n * t * m * m / (2.0 * v * (v + n * t));
}

/* Two-pass mean and sample variance of x[0 .. n-1]. */
static void
ref_moments(const double *x, int n, double *mean, double *var)
{
	double		s = 0.0;
	double		ss = 0.0;
	int			i;

	for (i = 0; i < n; i++)
		s += x[i];
	*mean = s / n;
	for (i = 0; i < n; i++)
		ss += (x[i] - *mean) * (x[i] - *mean);
	*var = n > 1 ? ss / (n - 1) : 0.0;
}

/* ---------- tests ---------- */

/* Parameters out of range are refused with a message. */
static void
test_init(void)
{
	RlSeqState s;
	char		err[RL_SEQ_ERRLEN];

	ok(rl_seq_init(&s, RL_SEQ_DEFAULT_TAU2, RL_SEQ_DEFAULT_MIN_N, err) ==
	   RL_SEQ_OK && err[0] == '\0' && s.n == 0,
	   "init with the defaults");
	ok(rl_seq_init(&s, 0.0, 10, err) == RL_SEQ_BAD_ARG && err[0] != '\0',
	   "tau2 = 0 is refused: %s", err);
	ok(rl_seq_init(&s, NAN, 10, err) == RL_SEQ_BAD_ARG,
	   "tau2 = NaN is refused");
	ok(rl_seq_init(&s, 0.01, 1, err) == RL_SEQ_BAD_ARG,
	   "min_n = 1 is refused: %s", err);
	ok(rl_seq_init(NULL, 0.01, 10, err) == RL_SEQ_BAD_ARG,
	   "a NULL state is refused");
}

/* Exact values on a small hand-computed sequence. */
static void
test_hand(void)
{
	const double d[] = {1, 2, 3, 4, 6};
	RlSeqState	s;
	RlSeqResult r;
	char		err[RL_SEQ_ERRLEN];
	int			i;
	int			rc = RL_SEQ_OK;
	double		best;

	rl_seq_init(&s, 0.5, 2, err);
	for (i = 0; i < 5; i++)
		rc |= rl_seq_add(&s, d[i], err);
	ok(rc == RL_SEQ_OK && s.n == 5, "five observations added");
	/* mean 16/5; deviations -2.2 -1.2 -0.2 0.8 2.8; M2 14.8; var 3.7 */
	ok(near(s.mean, 3.2, 1e-15), "mean 3.2 (got %.17g)", s.mean);
	ok(near(s.m2, 14.8, 1e-14), "M2 14.8 (got %.17g)", s.m2);
	rl_seq_test(&s, 0.05, 1, &r, err);
	ok(near(r.variance, 3.7, 1e-14), "variance 3.7 (got %.17g)",
	   r.variance);

	/*
	 * T = 0.5 v = 1.85: v + nT = 3.5 v, so log Lambda = 1/2 ln(2/7) + 25 *
	 * 0.5 * 10.24 / (2 * 3.7 * 3.5) = 4.315703457837258.
	 */
	ok(near(r.log_lambda, 4.315703457837258, 1e-13),
	   "log Lambda 4.3157034578 by hand (got %.17g)", r.log_lambda);
	ok(near(r.log_lambda, ref_llr(5, 3.2, 3.7, 0.5), 1e-13),
	   "log Lambda equals the unstandardised closed form");
	ok(near(r.log_threshold, log(20.0), 1e-15), "threshold log(1/0.05)");
	ok(r.decision == RL_SEQ_REJECT,
	   "Lambda 74.9 >= 1/0.05 and mean > 0: side +1 decided");

	/*
	 * Looks at n = 2 .. 5 (min_n 2): prefixes (mean, var) = (1.5, 0.5),
	 * (2, 1), (2.5, 5/3), (3.2, 3.7); p = 1 / the largest Lambda.
	 */
	best = fmax(fmax(ref_llr(2, 1.5, 0.5, 0.5), ref_llr(3, 2, 1, 0.5)),
				fmax(ref_llr(4, 2.5, 5.0 / 3.0, 0.5),
					 ref_llr(5, 3.2, 3.7, 0.5)));
	ok(near(r.p_value, exp(-best), 1e-12) && best > r.log_lambda,
	   "p = 1 / max over the looks = %.6g (peak at n = 4, log Lambda %.4f)",
	   r.p_value, best);
}

/*
 * At every look the p-value is 1 / the largest Lambda so far (over looks
 * from min_n on, per sign), recomputed here from scratch by two passes;
 * it never rises.
 */
static void
test_pvalue_path(void)
{
	enum
	{
		N = 400
	};
	double		x[N];
	RlSeqState	s;
	RlSeqResult r;
	Rng			g;
	char		err[RL_SEQ_ERRLEN];
	double		best_pos = 0.0;
	double		best_neg = 0.0;
	double		prev_p = 1.0;
	double		worst_llr = 0.0;
	double		worst_p = 0.0;
	int			monotone = 1;
	int			i;

	rng_seed(&g, 7);
	rl_seq_init(&s, 0.05, 20, err);
	for (i = 0; i < N; i++)
	{
		double		m;
		double		v;
		double		llr;

		/* a drifting mean, so that both signs and a rise and fall occur */
		x[i] = rng_norm(&g) + (i < 150 ? 0.25 : -0.6);
		rl_seq_add(&s, x[i], err);
		rl_seq_test(&s, 0.05, 1, &r, err);
		ref_moments(x, i + 1, &m, &v);
		llr = i + 1 >= 20 ? ref_llr(i + 1, m, v, 0.05) : 0.0;
		if (i + 1 >= 20 && m > 0 && llr > best_pos)
			best_pos = llr;
		if (i + 1 >= 20 && m < 0 && llr > best_neg)
			best_neg = llr;
		if (fabs(r.log_lambda - llr) > worst_llr)
			worst_llr = fabs(r.log_lambda - llr);
		if (fabs(r.p_value - exp(-fmax(best_pos, best_neg))) > worst_p)
			worst_p = fabs(r.p_value - exp(-fmax(best_pos, best_neg)));
		if (r.p_value > prev_p)
			monotone = 0;
		prev_p = r.p_value;
	}
	ok(worst_llr < 1e-9, "log Lambda matches the two-pass closed form at all %d looks (max error %.3g)",
	   N, worst_llr);
	ok(worst_p < 1e-12, "p = 1 / max Lambda_k over the looks (max error %.3g)",
	   worst_p);
	ok(monotone, "the p-value never rises");
	ok(best_pos > 0.0 && best_neg > 0.0 && r.mean < 0.0 &&
	   best_neg > r.log_lambda,
	   "looks of both signs, and Lambda fell from its peak (max log Lambda %.2f and %.2f, now %.2f)",
	   best_pos, best_neg, r.log_lambda);
	ok(near(r.p_value_side, exp(-best_pos), 1e-12) &&
	   r.p_value_side >= r.p_value,
	   "the one-sided p uses the looks with a positive mean only");
	rl_seq_test(&s, 0.05, -1, &r, err);
	ok(near(r.p_value_side, exp(-best_neg), 1e-12),
	   "and side -1 those with a negative mean");
}

/* Missing data is refused, never counted; the state does not move. */
static void
test_refusal(void)
{
	RlSeqState	s;
	RlSeqState	before;
	char		err[RL_SEQ_ERRLEN];
	const double bad[] = {NAN, INFINITY, -INFINITY};
	int			i;

	rl_seq_init(&s, 0.01, 2, err);
	rl_seq_add(&s, 0.5, err);
	rl_seq_add(&s, -0.25, err);
	before = s;
	for (i = 0; i < 3; i++)
	{
		int			rc = rl_seq_add(&s, bad[i], err);

		ok(rc == RL_SEQ_NOT_FINITE && err[0] != '\0' &&
		   strlen(err) < RL_SEQ_ERRLEN &&
		   memcmp(&s, &before, sizeof(s)) == 0,
		   "%g is refused, state unchanged: %s", bad[i], err);
	}
	ok(rl_seq_add_pair(&s, 0.01, NAN, err) == RL_SEQ_NOT_FINITE &&
	   memcmp(&s, &before, sizeof(s)) == 0,
	   "a pair with a missing side is refused: %s", err);
	ok(rl_seq_add_pair(&s, INFINITY, INFINITY, err) == RL_SEQ_NOT_FINITE,
	   "inf - inf is refused, not turned into NaN");
	ok(rl_seq_add(&s, 1e200, err) == RL_SEQ_NOT_FINITE &&
	   memcmp(&s, &before, sizeof(s)) == 0,
	   "an observation whose square overflows M2 is refused: %s", err);
	ok(rl_seq_add_pair(&s, 0.03, 0.01, err) == RL_SEQ_OK && s.n == 3 &&
	   err[0] == '\0', "a finite pair after refusals is the next observation");
}

/* The one-sided decision: min_n, the sign, the threshold, no variance. */
static void
test_decision(void)
{
	RlSeqState	s;
	RlSeqResult r;
	RlSeqResult r2;
	char		err[RL_SEQ_ERRLEN];
	int			i;
	double		a;

	rl_seq_init(&s, RL_SEQ_DEFAULT_TAU2, 100, err);
	for (i = 0; i < 99; i++)
		rl_seq_add(&s, 0.1 + (i % 2 ? 0.05 : -0.05), err);
	rl_seq_test(&s, 0.01, 1, &r, err);
	ok(r.decision == RL_SEQ_CONTINUE && r.log_lambda == 0.0 &&
	   r.p_value == 1.0 && strstr(r.reason, "min_n") != NULL,
	   "99 observations of a clear edge: no look before min_n (%s)",
	   r.reason);
	rl_seq_add(&s, 0.1, err);
	rl_seq_test(&s, 0.01, 1, &r, err);
	ok(r.decision == RL_SEQ_REJECT && r.log_lambda >= r.log_threshold,
	   "the 100th decides for side +1 (log Lambda %.1f >= %.2f)",
	   r.log_lambda, r.log_threshold);
	rl_seq_test(&s, 0.01, -1, &r2, err);
	ok(r2.decision == RL_SEQ_CONTINUE &&
	   strstr(r2.reason, "other sign") != NULL &&
	   r2.log_lambda == r.log_lambda && r2.p_value_side == 1.0,
	   "side -1 on a positive mean: no decision (%s)", r2.reason);

	/* decide exactly at the threshold: Lambda_n >= 1/alpha */
	a = exp(-r.log_lambda);
	rl_seq_test(&s, a * (1.0 + 1e-9), 1, &r2, err);
	ok(r2.decision == RL_SEQ_REJECT, "alpha just above 1/Lambda: decided");
	rl_seq_test(&s, a * (1.0 - 1e-9), 1, &r2, err);
	ok(r2.decision == RL_SEQ_CONTINUE &&
	   strstr(r2.reason, "threshold") != NULL,
	   "alpha just below 1/Lambda: not decided (%s)", r2.reason);

	/* a negative edge decides side -1 only */
	rl_seq_init(&s, RL_SEQ_DEFAULT_TAU2, 10, err);
	for (i = 0; i < 400; i++)
		rl_seq_add(&s, -0.02 + (i % 2 ? 0.1 : -0.1), err);
	rl_seq_test(&s, 0.05, -1, &r, err);
	rl_seq_test(&s, 0.05, 1, &r2, err);
	ok(r.decision == RL_SEQ_REJECT && r2.decision == RL_SEQ_CONTINUE,
	   "a mean of -0.2 sd over 400 bars: side -1 decided, side +1 not (log Lambda %.2f)",
	   r.log_lambda);

	/* both versions flat: d = 0 exactly, no scale, no evidence */
	rl_seq_init(&s, RL_SEQ_DEFAULT_TAU2, 2, err);
	for (i = 0; i < 500; i++)
		rl_seq_add_pair(&s, 0.0, 0.0, err);
	rl_seq_test(&s, 0.01, 1, &r, err);
	ok(r.decision == RL_SEQ_CONTINUE && r.log_lambda == 0.0 &&
	   r.p_value == 1.0 && strstr(r.reason, "variance") != NULL,
	   "identical returns: no evidence (%s)", r.reason);

	ok(rl_seq_test(&s, 0.0, 1, &r, err) == RL_SEQ_BAD_ARG &&
	   rl_seq_test(&s, 1.0, 1, &r, err) == RL_SEQ_BAD_ARG &&
	   rl_seq_test(&s, 0.05, 0, &r, err) == RL_SEQ_BAD_ARG,
	   "alpha outside (0, 1) and side 0 are refused: %s", err);
}

/* Merging is exact for the moments; it looks once, at the end. */
static void
test_merge(void)
{
	RlSeqState	whole;
	RlSeqState	a;
	RlSeqState	b;
	RlSeqState	other;
	RlSeqResult rw;
	RlSeqResult ra;
	Rng			g;
	char		err[RL_SEQ_ERRLEN];
	int			i;

	rng_seed(&g, 11);
	rl_seq_init(&whole, 0.02, 30, err);
	rl_seq_init(&a, 0.02, 30, err);
	rl_seq_init(&b, 0.02, 30, err);
	for (i = 0; i < 1000; i++)
	{
		double		x = 0.001 * rng_norm(&g) + 0.0003;

		rl_seq_add(&whole, x, err);
		rl_seq_add(i < 370 ? &a : &b, x, err);
	}
	ok(rl_seq_merge(&a, &b, err) == RL_SEQ_OK && a.n == whole.n &&
	   near(a.mean, whole.mean, 1e-12) && near(a.m2, whole.m2, 1e-12),
	   "merge: count, mean and M2 equal the whole sequence's");
	rl_seq_test(&whole, 0.05, 1, &rw, err);
	rl_seq_test(&a, 0.05, 1, &ra, err);
	ok(near(ra.log_lambda, rw.log_lambda, 1e-9) &&
	   ra.p_value >= rw.p_value - 1e-15 &&
	   ra.p_value <= exp(-ra.log_lambda) * (1 + 1e-12),
	   "merged: same log Lambda, p between the whole's and 1/Lambda_n (%.4g, %.4g)",
	   ra.p_value, rw.p_value);
	rl_seq_init(&other, 0.03, 30, err);
	ok(rl_seq_merge(&a, &other, err) == RL_SEQ_BAD_ARG,
	   "merging states with different tau2 is refused: %s", err);
	rl_seq_init(&other, 0.02, 30, err);
	ok(rl_seq_merge(&other, &b, err) == RL_SEQ_OK &&
	   memcmp(&other, &b, sizeof(b)) == 0,
	   "merging into an empty state copies the other");
}

/* A row round-trips exactly; a hand-edited row is refused. */
static void
test_serialize(void)
{
	RlSeqState	s;
	RlSeqState	t;
	double		v[RL_SEQ_STATE_LEN];
	double		w[RL_SEQ_STATE_LEN];
	char		err[RL_SEQ_ERRLEN];
	int			i;

	rl_seq_init(&s, 0.01, 5, err);
	for (i = 0; i < 50; i++)
		rl_seq_add(&s, sin(i * 1.3) + 0.2, err);
	rl_seq_serialize(&s, v);
	ok(rl_seq_deserialize(v, &t, err) == RL_SEQ_OK &&
	   memcmp(&s, &t, sizeof(s)) == 0 && s.max_llr_pos > 0.0,
	   "serialise and back: the same state");
	memcpy(w, v, sizeof(v));
	w[0] = 50.5;
	ok(rl_seq_deserialize(w, &t, err) == RL_SEQ_BAD_STATE,
	   "a fractional count is refused: %s", err);
	memcpy(w, v, sizeof(v));
	w[2] = -1.0;
	ok(rl_seq_deserialize(w, &t, err) == RL_SEQ_BAD_STATE,
	   "a negative M2 is refused: %s", err);
	memcpy(w, v, sizeof(v));
	w[1] = NAN;
	ok(rl_seq_deserialize(w, &t, err) == RL_SEQ_BAD_STATE,
	   "a NaN mean is refused: %s", err);
	memcpy(w, v, sizeof(v));
	w[0] = 3.0;
	ok(rl_seq_deserialize(w, &t, err) == RL_SEQ_BAD_STATE,
	   "a running maximum before min_n is refused: %s", err);
	memcpy(w, v, sizeof(v));
	w[3] = 0.0;
	ok(rl_seq_deserialize(w, &t, err) == RL_SEQ_BAD_STATE,
	   "tau2 = 0 is refused: %s", err);
}

/* Holm on hand examples, against Bonferroni's smaller rejection set. */
static void
test_holm(void)
{
	const double p1[] = {0.01, 0.04, 0.03, 0.005};
	const double p2[] = {0.012, 0.04, 0.02, 0.001};
	const double p3[] = {0.02, 0.02};
	double		adj[4];
	bool		rej[4];
	int32_t		nr = -1;
	char		err[RL_SEQ_ERRLEN];
	int			bonf = 0;
	int			i;

	/*
	 * Sorted 0.005 0.01 0.03 0.04 against 0.05 / (4, 3, 2, 1) = 0.0125
	 * 0.0167 0.025 0.05: the first two pass, 0.03 > 0.025 stops.  Adjusted:
	 * 0.02 0.03 0.06 0.06.
	 */
	ok(rl_seq_holm(p1, 4, 0.05, adj, rej, &nr, err) == RL_SEQ_OK &&
	   nr == 2 && rej[3] && rej[0] && !rej[2] && !rej[1],
	   "Holm, example 1: rejects p = 0.005 and 0.01 only");
	ok(near(adj[3], 0.02, 1e-15) && near(adj[0], 0.03, 1e-15) &&
	   near(adj[2], 0.06, 1e-15) && near(adj[1], 0.06, 1e-15),
	   "Holm, example 1: adjusted p 0.03 0.06 0.06 0.02");

	/*
	 * Sorted 0.001 0.012 0.02 0.04: each passes (0.0125 0.0167 0.025 0.05),
	 * so Holm rejects all four; Bonferroni (0.0125) only two.
	 */
	rl_seq_holm(p2, 4, 0.05, adj, rej, &nr, err);
	for (i = 0; i < 4; i++)
		bonf += p2[i] <= 0.05 / 4;
	ok(nr == 4 && rej[0] && rej[1] && rej[2] && rej[3] && bonf == 2,
	   "Holm, example 2: all four rejected where Bonferroni rejects %d",
	   bonf);
	ok(near(adj[3], 0.004, 1e-15) && near(adj[0], 0.036, 1e-15) &&
	   near(adj[2], 0.04, 1e-15) && near(adj[1], 0.04, 1e-15),
	   "Holm, example 2: adjusted p 0.036 0.04 0.04 0.004");

	/* ties share their adjusted value */
	rl_seq_holm(p3, 2, 0.04, adj, rej, &nr, err);
	ok(nr == 2 && adj[0] == adj[1] && near(adj[0], 0.04, 1e-15),
	   "Holm, ties: both 0.02 reach 0.04 and are rejected at 0.04");
	rl_seq_holm(p3, 2, 0.039, adj, rej, &nr, err);
	ok(nr == 0, "Holm, ties: neither at 0.039");
	ok(rl_seq_holm(NULL, 0, 0.05, NULL, NULL, &nr, err) == RL_SEQ_OK &&
	   nr == 0, "Holm with no hypotheses rejects none");
	adj[0] = 1.5;
	ok(rl_seq_holm(adj, 1, 0.05, NULL, rej, NULL, err) == RL_SEQ_BAD_ARG,
	   "a p-value above 1 is refused: %s", err);
}

/*
 * Under H0 (Gaussian d, mean 0) with a look after every observation, the
 * always-valid test rejects on at most alpha of the paths, up to a
 * binomial tolerance; a t-test repeated at every look on the same paths
 * rejects far more often (the simulation can see an invalid test), and an
 * edge of 0.25 sd is found on nearly every path (it can see a test that
 * never rejects).
 */
static void
test_simulation(void)
{
	enum
	{
		PATHS = 2000, STEPS = 2000
	};
	const double alpha = 0.05;
	const double tau2s[] = {RL_SEQ_DEFAULT_TAU2, 0.5};
	const double z_crit = 1.959963984540054;	/* two-sided 5% */
	double		tol = 3.0 * sqrt(alpha * (1.0 - alpha) / PATHS);
	Rng			g;
	int			c;

	rng_seed(&g, 20240601);
	for (c = 0; c < 2; c++)
	{
		int			any = 0;
		int			side_neg = 0;
		int			ttest = 0;
		int			found = 0;
		int			path;

		for (path = 0; path < PATHS; path++)
		{
			RlSeqState	s;
			RlSeqState	e;
			RlSeqResult r;
			int			t_fired = 0;
			int			decided = 0;
			int			i;

			rl_seq_init(&s, tau2s[c], RL_SEQ_DEFAULT_MIN_N, NULL);
			rl_seq_init(&e, tau2s[c], RL_SEQ_DEFAULT_MIN_N, NULL);
			for (i = 0; i < STEPS; i++)
			{
				double		x = rng_norm(&g);

				rl_seq_add(&s, x, NULL);
				if (!t_fired && s.n >= RL_SEQ_DEFAULT_MIN_N &&
					fabs(s.mean) * sqrt((double) s.n) >
					z_crit * sqrt(s.m2 / (double) (s.n - 1)))
					t_fired = 1;
				if (path < PATHS / 4 && !decided)
				{
					rl_seq_add(&e, x + 0.25, NULL);
					rl_seq_test(&e, alpha, 1, &r, NULL);
					decided = r.decision == RL_SEQ_REJECT;
				}
			}
			rl_seq_test(&s, alpha, -1, &r, NULL);
			any += r.p_value <= alpha;
			side_neg += r.p_value_side <= alpha;
			ttest += t_fired;
			found += decided;
		}
		ok((double) any / PATHS <= alpha + tol,
		   "tau2 %g: H0 rejected at some look on %.4f of %d paths x %d looks (<= %.2f + %.4f)",
		   tau2s[c], (double) any / PATHS, PATHS, STEPS, alpha, tol);
		ok((double) side_neg / PATHS <= alpha / 2 + tol,
		   "tau2 %g: one-sided (mean < 0) on %.4f (<= alpha/2 + %.4f)",
		   tau2s[c], (double) side_neg / PATHS, tol);
		ok((double) ttest / PATHS > 3 * alpha,
		   "tau2 %g paths: a t-test repeated at every look rejects on %.3f (> 3 alpha)",
		   tau2s[c], (double) ttest / PATHS);
		ok((double) found / (PATHS / 4) >= 0.95,
		   "tau2 %g: an edge of 0.25 sd is decided on %.3f of %d paths within %d bars",
		   tau2s[c], (double) found / (PATHS / 4), PATHS / 4, STEPS);
	}
}

int
main(void)
{
	test_init();
	test_hand();
	test_pvalue_path();
	test_refusal();
	test_decision();
	test_merge();
	test_serialize();
	test_holm();
	test_simulation();
	return done_testing();
}
