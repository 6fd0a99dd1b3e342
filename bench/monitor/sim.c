/*-------------------------------------------------------------------------
 *
 * sim.c
 *	  Operating characteristic of the paired always-valid test of
 *	  src/core/sequential.c, as issues 12 (automatic rollback) and 13
 *	  (promotion of challengers) ask: simulated markets, zero-edge and
 *	  edged models traded on the same bars, a look after every bar.
 *	  Prints markdown tables.  Deterministic: every table cell has its own
 *	  xoshiro256** stream seeded from --seed and the cell's number.
 *
 *	  sim [--paths P] [--steps N] [--seed S]
 *
 * Markets (per-bar log returns r, cost 5 bp per unit of position change):
 *	gauss       normal, sd 1% (costs small against the noise)
 *	gauss-low   normal, sd 0.05% (costs as large as a bar's move)
 *	t3          Student-t with 3 degrees of freedom, sd 1%
 *	garch       GARCH(1,1), h' = w + 0.10 r^2 + 0.85 h, normal shocks, sd 1%
 *	garch-t3    the same GARCH with Student-t(3) shocks
 * A zero-edge model holds -1, 0 or +1 and, on each bar with probability
 * 0.1, draws a new position uniformly, independently of the future: its
 * expected net return is minus its expected cost, the same for every such
 * model.  An edge of delta is a constant delta * sd(d) per bar added to
 * the better model's net return, sd(d) the standard deviation of the
 * difference of two zero-edge models in that market (from a pilot run).
 *
 * bench/monitor/sim.c
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sequential.h"

#define COST 0.0005
#define SWITCH_P 0.1
#define N_ALPHA 3
#define MAX_CH 8

static const double alphas[N_ALPHA] = {0.01, 0.05, 0.10};

/* one-sided normal quantiles z_{1-alpha} for alphas[] */
static const double z_one[N_ALPHA] = {2.3263478740408408, 1.6448536269514722,
1.2815515655446004};

/* ---------- PRNG: splitmix64 seeding xoshiro256** ---------- */

typedef struct Rng
{
	uint64_t	s[4];
	double		spare;
	int			has_spare;
} Rng;

/* One stream per (seed, cell): cells do not depend on each other's order. */
static void
rng_seed(Rng *r, uint64_t seed, uint64_t cell)
{
	uint64_t	x = seed * 0x9e3779b97f4a7c15ULL + cell * 0xd1b54a32d192ed03ULL;
	int			i;

	for (i = 0; i < 4; i++)
	{
		uint64_t	z = (x += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		r->s[i] = z ^ (z >> 31);
	}
	r->has_spare = 0;
}

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static inline uint64_t
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

/* Uniform in (0, 1). */
static inline double
rng_unif(Rng *r)
{
	return ((double) (rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal, Marsaglia's polar method (both values used). */
static double
rng_norm(Rng *r)
{
	double		u;
	double		v;
	double		s;

	if (r->has_spare)
	{
		r->has_spare = 0;
		return r->spare;
	}
	do
	{
		u = 2.0 * rng_unif(r) - 1.0;
		v = 2.0 * rng_unif(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0);
	s = sqrt(-2.0 * log(s) / s);
	r->spare = v * s;
	r->has_spare = 1;
	return u * s;
}

/* Student-t(3) scaled to variance 1: z / sqrt(chi2_3 / 3) / sqrt(3). */
static double
rng_t3(Rng *r)
{
	double		a = rng_norm(r);
	double		b = rng_norm(r);
	double		c = rng_norm(r);
	double		z = rng_norm(r);

	return z / sqrt(a * a + b * b + c * c);
}

/* ---------- markets and models ---------- */

typedef enum Noise
{
	GAUSS, GAUSS_LOW, T3, GARCH, GARCH_T3, N_NOISE
} Noise;

static const char *const noise_name[N_NOISE] = {
	"gauss (sd 1%)", "gauss-low (sd 0.05%)", "t3 (sd 1%)",
	"garch (sd 1%)", "garch-t3 (sd 1%)"
};

typedef struct Market
{
	Noise		kind;
	double		sd;				/* unconditional sd of r */
	double		h;				/* GARCH conditional variance */
	double		r_prev;
} Market;

#define GARCH_A 0.10
#define GARCH_B 0.85

static void
market_init(Market *m, Noise kind)
{
	m->kind = kind;
	m->sd = kind == GAUSS_LOW ? 0.0005 : 0.01;
	m->h = m->sd * m->sd;
	m->r_prev = 0.0;
}

/* The next bar's log return. */
static double
market_next(Market *m, Rng *g)
{
	double		r;

	switch (m->kind)
	{
		case GAUSS:
		case GAUSS_LOW:
			return m->sd * rng_norm(g);
		case T3:
			return m->sd * rng_t3(g);
		case GARCH:
		case GARCH_T3:
			m->h = m->sd * m->sd * (1.0 - GARCH_A - GARCH_B) +
				GARCH_A * m->r_prev * m->r_prev + GARCH_B * m->h;
			r = sqrt(m->h) * (m->kind == GARCH ? rng_norm(g) : rng_t3(g));
			m->r_prev = r;
			return r;
		default:
			abort();
	}
}

/* A zero-edge model's new position; returns its cost. */
static inline double
model_step(int *pos, Rng *g)
{
	int			old = *pos;

	if (rng_unif(g) < SWITCH_P)
		*pos = (int) (rng_unif(g) * 3.0) - 1;
	return COST * (double) abs(*pos - old);
}

/* Running mean and M2 for the naive rules. */
typedef struct Welf
{
	double		n;
	double		mean;
	double		m2;
} Welf;

static inline void
welf_add(Welf *w, double x)
{
	double		d = x - w->mean;

	w->n += 1.0;
	w->mean += d / w->n;
	w->m2 += d * (x - w->mean);
}

static inline double
welf_sharpe(const Welf *w)
{
	double		v = w->n > 1 ? w->m2 / (w->n - 1) : 0.0;

	return v > 0 ? w->mean / sqrt(v) : 0.0;
}

/* sd of the difference of two zero-edge models' net returns, by pilot. */
static double
pilot_sd(Noise kind, uint64_t seed)
{
	Rng			g;
	Market		m;
	Welf		w = {0, 0, 0};
	int			pa = 0;
	int			pb = 0;
	long		i;

	rng_seed(&g, seed, 1000 + kind);
	market_init(&m, kind);
	for (i = 0; i < 4000000; i++)
	{
		double		ca = model_step(&pa, &g);
		double		cb = model_step(&pb, &g);
		double		r = market_next(&m, &g);

		welf_add(&w, (pa * r - ca) - (pb * r - cb));
	}
	return sqrt(w.m2 / (w.n - 1));
}

static void
die_rc(int rc, const char *err)
{
	if (rc != RL_SEQ_OK)
	{
		fprintf(stderr, "sequential: %s\n", err);
		exit(1);
	}
}

static int
cmp_long(const void *a, const void *b)
{
	long		x = *(const long *) a;
	long		y = *(const long *) b;

	return (x > y) - (x < y);
}

/* q-quantile of n sorted times; -1 (not reached) sorts last. */
static long
quantile(long *t, int n, double q)
{
	int			i;

	for (i = 0; i < n; i++)
		if (t[i] < 0)
			t[i] = LONG_MAX;
	qsort(t, n, sizeof(long), cmp_long);
	return t[(int) floor(q * (n - 1) + 0.5)];
}

/* ---------- 1. false rollback between two zero-edge models ---------- */

/* Settings of the plug-in table: tau2 x min_n; entry 0 is the default. */
#define N_SET 8
static const double set_tau2[N_SET] = {0.01, 0.001, 0.1, 1.0,
0.01, 0.001, 0.1, 1.0};
static const int64_t set_min_n[N_SET] = {100, 100, 100, 100, 2, 2, 2, 2};

typedef struct H0Result
{
	double		seq[N_SET][N_ALPHA];	/* one-sided rollback (decision) */
	double		seq_two[N_ALPHA];	/* default, two-sided p <= alpha */
	double		naive_every;	/* predecessor's Sharpe higher at a look */
	double		naive_end;		/* ... at the last bar only */
	double		t_every[N_ALPHA];	/* one-sided t-test at every look */
	double		t_end[N_ALPHA]; /* ... at the last bar only */
	double		first_naive_mean;	/* mean bar of the naive rule's firing */
} H0Result;

/*
 * Champion A and predecessor B, both zero-edge; rollback = evidence that
 * mean(d) < 0 with d = net_A - net_B.  Every rule looks from bar min_n
 * (100) on, after every bar.
 */
static void
run_h0(Noise kind, int paths, long steps, uint64_t seed, H0Result *res)
{
	long		cnt_seq[N_SET][N_ALPHA] = {{0}};
	long		cnt_two[N_ALPHA] = {0};
	long		cnt_t_every[N_ALPHA] = {0};
	long		cnt_t_end[N_ALPHA] = {0};
	long		cnt_naive_every = 0;
	long		cnt_naive_end = 0;
	double		sum_first = 0.0;
	int			p;
	int			j;
	int			k;
	char		err[RL_SEQ_ERRLEN];

	for (p = 0; p < paths; p++)
	{
		Rng			g;
		Market		m;
		RlSeqState	s[N_SET];
		Welf		wa = {0, 0, 0};
		Welf		wb = {0, 0, 0};
		int			pa = 0;
		int			pb = 0;
		int			t_fired[N_ALPHA] = {0};
		long		naive_at = -1;
		long		i;

		rng_seed(&g, seed, (uint64_t) kind * 1000003 + p);
		market_init(&m, kind);
		for (k = 0; k < N_SET; k++)
			die_rc(rl_seq_init(&s[k], set_tau2[k], set_min_n[k], err), err);
		for (i = 1; i <= steps; i++)
		{
			double		ca = model_step(&pa, &g);
			double		cb = model_step(&pb, &g);
			double		r = market_next(&m, &g);
			double		na = pa * r - ca;
			double		nb = pb * r - cb;

			for (k = 0; k < N_SET; k++)
				die_rc(rl_seq_add_pair(&s[k], na, nb, err), err);
			welf_add(&wa, na);
			welf_add(&wb, nb);
			if (i >= RL_SEQ_DEFAULT_MIN_N)
			{
				double		sd = sqrt(s[0].m2 / (double) (s[0].n - 1));
				double		tstat = sd > 0 ? s[0].mean * sqrt((double) i) / sd : 0;

				if (naive_at < 0 && welf_sharpe(&wb) > welf_sharpe(&wa))
					naive_at = i;
				for (j = 0; j < N_ALPHA; j++)
				{
					if (tstat < -z_one[j])
						t_fired[j] = 1;
					if (i == steps && tstat < -z_one[j])
						cnt_t_end[j]++;
				}
			}
		}
		for (k = 0; k < N_SET; k++)
			for (j = 0; j < N_ALPHA; j++)
				cnt_seq[k][j] += s[k].max_llr_neg >= -log(alphas[j]);
		for (j = 0; j < N_ALPHA; j++)
		{
			cnt_two[j] += fmax(s[0].max_llr_neg, s[0].max_llr_pos) >=
				-log(alphas[j]);
			cnt_t_every[j] += t_fired[j];
		}
		if (naive_at >= 0)
		{
			cnt_naive_every++;
			sum_first += (double) naive_at;
		}
		cnt_naive_end += welf_sharpe(&wb) > welf_sharpe(&wa);
	}
	for (k = 0; k < N_SET; k++)
		for (j = 0; j < N_ALPHA; j++)
			res->seq[k][j] = (double) cnt_seq[k][j] / paths;
	for (j = 0; j < N_ALPHA; j++)
	{
		res->seq_two[j] = (double) cnt_two[j] / paths;
		res->t_every[j] = (double) cnt_t_every[j] / paths;
		res->t_end[j] = (double) cnt_t_end[j] / paths;
	}
	res->naive_every = (double) cnt_naive_every / paths;
	res->naive_end = (double) cnt_naive_end / paths;
	res->first_naive_mean = cnt_naive_every ? sum_first / cnt_naive_every : 0;
}

/* ---------- 2. bars until rollback against the edge ---------- */

#define N_DELTA 6
#define N_TAU 4
static const double deltas[N_DELTA] = {0.02, 0.05, 0.1, 0.2, 0.3, 0.5};
static const double edge_tau2[N_TAU] = {0.001, 0.01, 0.1, 1.0};

/*
 * The predecessor is better by delta * sd(d) per bar; bars until the
 * default test (alpha 0.01, min_n 100) rolls back, for each tau2, and
 * until the naive rule and the repeated t-test would.
 */
static void
run_edge(Noise kind, int paths, long steps, uint64_t seed, double sd_d,
		 FILE *out)
{
	long	   *times = malloc(sizeof(long) * paths * (N_TAU + 2));
	int			di;
	int			k;
	char		err[RL_SEQ_ERRLEN];
	double		thr = -log(0.01);

	fprintf(out, "\n**%s**, sd(d) = %.3g per bar, alpha 0.01, min_n 100, "
			"%d paths, horizon %ld bars: median bars until rollback "
			"[90th percentile]; share of paths rolled back within the horizon\n\n",
			noise_name[kind], sd_d, paths, steps);
	fprintf(out, "| edge delta (sd of d per bar) | tau2 0.001 | tau2 0.01 (default) | tau2 0.1 | tau2 1 | repeated t-test | naive Sharpe rule |\n");
	fprintf(out, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (di = 0; di < N_DELTA; di++)
	{
		double		mu = deltas[di] * sd_d;
		int			p;

		for (p = 0; p < paths; p++)
		{
			Rng			g;
			Market		m;
			RlSeqState	s[N_TAU];
			Welf		wa = {0, 0, 0};
			Welf		wb = {0, 0, 0};
			int			pa = 0;
			int			pb = 0;
			int			left = N_TAU + 2;
			long		i;

			rng_seed(&g, seed, 5000000 + (uint64_t) kind * 100003 +
					 (uint64_t) di * 10007 + p);
			market_init(&m, kind);
			for (k = 0; k < N_TAU; k++)
				die_rc(rl_seq_init(&s[k], edge_tau2[k], RL_SEQ_DEFAULT_MIN_N,
								   err), err);
			for (k = 0; k < N_TAU + 2; k++)
				times[(long) p * (N_TAU + 2) + k] = -1;
			for (i = 1; i <= steps && left > 0; i++)
			{
				double		ca = model_step(&pa, &g);
				double		cb = model_step(&pb, &g);
				double		r = market_next(&m, &g);
				double		na = pa * r - ca;
				double		nb = pb * r - cb + mu;
				long	   *tp = &times[(long) p * (N_TAU + 2)];

				for (k = 0; k < N_TAU; k++)
				{
					die_rc(rl_seq_add_pair(&s[k], na, nb, err), err);
					if (tp[k] < 0 && s[k].max_llr_neg >= thr)
					{
						tp[k] = i;
						left--;
					}
				}
				welf_add(&wa, na);
				welf_add(&wb, nb);
				if (i >= RL_SEQ_DEFAULT_MIN_N)
				{
					double		sd = sqrt(s[0].m2 / (double) (s[0].n - 1));

					if (tp[N_TAU] < 0 && sd > 0 &&
						s[0].mean * sqrt((double) i) / sd < -z_one[0])
					{
						tp[N_TAU] = i;
						left--;
					}
					if (tp[N_TAU + 1] < 0 &&
						welf_sharpe(&wb) > welf_sharpe(&wa))
					{
						tp[N_TAU + 1] = i;
						left--;
					}
				}
			}
		}
		fprintf(out, "| %.2f |", deltas[di]);
		for (k = 0; k < N_TAU + 2; k++)
		{
			long	   *col = malloc(sizeof(long) * paths);
			long		med;
			long		p90;
			int			found = 0;

			for (p = 0; p < paths; p++)
			{
				col[p] = times[(long) p * (N_TAU + 2) + k];
				found += col[p] >= 0;
			}
			med = quantile(col, paths, 0.5);
			p90 = quantile(col, paths, 0.9);
			if (med == LONG_MAX)
				fprintf(out, " > %ld; %.0f%% |", steps, 100.0 * found / paths);
			else if (p90 == LONG_MAX)
				fprintf(out, " %ld [> %ld]; %.0f%% |", med, steps,
						100.0 * found / paths);
			else
				fprintf(out, " %ld [%ld]; %.0f%% |", med, p90,
						100.0 * found / paths);
			free(col);
		}
		fprintf(out, "\n");
	}
	free(times);
}

/* ---------- 3. eight challengers ---------- */

/*
 * One champion and 8 challengers on the same bars; promotion = evidence
 * that mean(challenger - champion) > 0.  Challenger 0 has an edge of
 * delta (0: all are zero-edge).  Per path, the first bar at which each
 * rule promotes anything, and whether the first promoted is a null.
 */
typedef struct MultiResult
{
	double		any[N_ALPHA][3];	/* uncorrected, Bonferroni, Holm */
	double		naive;			/* best Sharpe beats the champion's */
	double		t_every[N_ALPHA];	/* uncorrected repeated t-test */
	int			holm_consistent;	/* every bar == on the final p-values */
} MultiResult;

static void
run_multi_h0(Noise kind, int paths, long steps, uint64_t seed,
			 MultiResult *res)
{
	long		cnt[N_ALPHA][3] = {{0}};
	long		cnt_t[N_ALPHA] = {0};
	long		cnt_naive = 0;
	int			p;
	int			j;
	int			c;
	char		err[RL_SEQ_ERRLEN];

	res->holm_consistent = 1;
	for (p = 0; p < paths; p++)
	{
		Rng			g;
		Market		m;
		RlSeqState	s[MAX_CH];
		Welf		wc[MAX_CH + 1];
		int			pos[MAX_CH + 1] = {0};
		int			holm_fired[N_ALPHA] = {0};
		int			t_fired[N_ALPHA] = {0};
		int			naive_fired = 0;
		double		pv[MAX_CH];
		bool		rej[MAX_CH];
		int32_t		nrej;
		long		i;

		rng_seed(&g, seed, 9000000 + (uint64_t) kind * 1000003 + p);
		market_init(&m, kind);
		memset(wc, 0, sizeof(wc));
		for (c = 0; c < MAX_CH; c++)
			die_rc(rl_seq_init(&s[c], RL_SEQ_DEFAULT_TAU2,
							   RL_SEQ_DEFAULT_MIN_N, err), err);
		for (i = 1; i <= steps; i++)
		{
			double		cost[MAX_CH + 1];
			double		net[MAX_CH + 1];
			double		r;

			for (c = 0; c <= MAX_CH; c++)
				cost[c] = model_step(&pos[c], &g);
			r = market_next(&m, &g);
			for (c = 0; c <= MAX_CH; c++)
			{
				net[c] = pos[c] * r - cost[c];
				welf_add(&wc[c], net[c]);
			}
			for (c = 0; c < MAX_CH; c++)
				die_rc(rl_seq_add_pair(&s[c], net[c + 1], net[0], err), err);
			if (i < RL_SEQ_DEFAULT_MIN_N)
				continue;
			for (c = 0; c < MAX_CH; c++)
			{
				double		sd = sqrt(s[c].m2 / (double) (s[c].n - 1));
				double		tstat = sd > 0 ? s[c].mean * sqrt((double) i) / sd : 0;

				pv[c] = exp(-s[c].max_llr_pos);
				for (j = 0; j < N_ALPHA; j++)
					if (tstat > z_one[j])
						t_fired[j] = 1;
				if (welf_sharpe(&wc[c + 1]) > welf_sharpe(&wc[0]))
					naive_fired = 1;
			}
			for (j = 0; j < N_ALPHA; j++)
			{
				if (holm_fired[j])
					continue;
				die_rc(rl_seq_holm(pv, MAX_CH, alphas[j], NULL, rej, &nrej,
								   err), err);
				holm_fired[j] = nrej > 0;
			}
		}
		for (j = 0; j < N_ALPHA; j++)
		{
			double		best = 0.0;
			double		thr = -log(alphas[j]);

			for (c = 0; c < MAX_CH; c++)
			{
				if (s[c].max_llr_pos > best)
					best = s[c].max_llr_pos;
				pv[c] = exp(-s[c].max_llr_pos);
			}
			cnt[j][0] += best >= thr;
			cnt[j][1] += best >= thr + log((double) MAX_CH);
			cnt[j][2] += holm_fired[j];
			die_rc(rl_seq_holm(pv, MAX_CH, alphas[j], NULL, rej, &nrej, err),
				   err);
			if ((nrej > 0) != holm_fired[j])
				res->holm_consistent = 0;
			cnt_t[j] += t_fired[j];
		}
		cnt_naive += naive_fired;
	}
	for (j = 0; j < N_ALPHA; j++)
	{
		for (c = 0; c < 3; c++)
			res->any[j][c] = (double) cnt[j][c] / paths;
		res->t_every[j] = (double) cnt_t[j] / paths;
	}
	res->naive = (double) cnt_naive / paths;
}

/*
 * Challenger 0 better than the champion by delta; bars until it is
 * promoted alone (k = 1, no correction) and under Holm with k = 8, and
 * the share of paths where a zero-edge challenger was promoted before it
 * (uncorrected: the first to cross log(1/alpha); Holm: the first
 * rejection).
 */
static void
run_multi_edge(Noise kind, int paths, long steps, uint64_t seed,
			   double sd_d, FILE *out)
{
	long	   *t_single = malloc(sizeof(long) * paths);
	long	   *t_holm = malloc(sizeof(long) * paths);
	int			di;
	char		err[RL_SEQ_ERRLEN];
	const double alpha = 0.01;
	const double thr = -log(0.01);

	fprintf(out, "\n**%s**, alpha 0.01, 1 challenger with an edge + 7 zero-edge, %d paths, horizon %ld bars: median bars until the edged challenger is promoted [90th percentile]; share of paths where a zero-edge challenger was promoted first\n\n",
			noise_name[kind], paths, steps);
	fprintf(out, "| edge delta | alone (k = 1) | Holm, k = 8 | zero-edge promoted first, uncorrected | zero-edge promoted first, Holm |\n");
	fprintf(out, "| ---: | ---: | ---: | ---: | ---: |\n");
	for (di = 1; di < N_DELTA; di++)
	{
		double		mu = deltas[di] * sd_d;
		long		wrong_unc = 0;
		long		wrong_holm = 0;
		long		med[2];
		long		p90[2];
		int			p;
		int			q;

		for (p = 0; p < paths; p++)
		{
			Rng			g;
			Market		m;
			RlSeqState	s[MAX_CH];
			int			pos[MAX_CH + 1] = {0};
			double		pv[MAX_CH];
			bool		rej[MAX_CH];
			int32_t		nrej;
			long		t_null = -1;	/* first null past log(1/alpha) */
			long		h_null = -1;	/* first null rejected by Holm */
			int			c;
			long		i;

			rng_seed(&g, seed, 13000000 + (uint64_t) kind * 100003 +
					 (uint64_t) di * 10007 + p);
			market_init(&m, kind);
			for (c = 0; c < MAX_CH; c++)
				die_rc(rl_seq_init(&s[c], RL_SEQ_DEFAULT_TAU2,
								   RL_SEQ_DEFAULT_MIN_N, err), err);
			t_single[p] = -1;
			t_holm[p] = -1;
			for (i = 1; i <= steps && (t_single[p] < 0 || t_holm[p] < 0); i++)
			{
				double		cost[MAX_CH + 1];
				double		net[MAX_CH + 1];
				double		r;

				for (c = 0; c <= MAX_CH; c++)
					cost[c] = model_step(&pos[c], &g);
				r = market_next(&m, &g);
				for (c = 0; c <= MAX_CH; c++)
					net[c] = pos[c] * r - cost[c] + (c == 1 ? mu : 0.0);
				for (c = 0; c < MAX_CH; c++)
				{
					die_rc(rl_seq_add_pair(&s[c], net[c + 1], net[0], err),
						   err);
					pv[c] = exp(-s[c].max_llr_pos);
					if (c > 0 && t_null < 0 && s[c].max_llr_pos >= thr)
						t_null = i;
				}
				if (t_single[p] < 0 && s[0].max_llr_pos >= thr)
					t_single[p] = i;
				die_rc(rl_seq_holm(pv, MAX_CH, alpha, NULL, rej, &nrej, err),
					   err);
				for (c = 1; c < MAX_CH && h_null < 0; c++)
					if (rej[c])
						h_null = i;
				if (t_holm[p] < 0 && rej[0])
					t_holm[p] = i;
			}
			wrong_unc += t_null >= 0 && (t_single[p] < 0 || t_null < t_single[p]);
			wrong_holm += h_null >= 0 && (t_holm[p] < 0 || h_null < t_holm[p]);
		}
		med[0] = quantile(t_single, paths, 0.5);
		p90[0] = quantile(t_single, paths, 0.9);
		med[1] = quantile(t_holm, paths, 0.5);
		p90[1] = quantile(t_holm, paths, 0.9);
		fprintf(out, "| %.2f |", deltas[di]);
		for (q = 0; q < 2; q++)
		{
			if (med[q] == LONG_MAX)
				fprintf(out, " > %ld |", steps);
			else if (p90[q] == LONG_MAX)
				fprintf(out, " %ld [> %ld] |", med[q], steps);
			else
				fprintf(out, " %ld [%ld] |", med[q], p90[q]);
		}
		fprintf(out, " %.2f%% | %.2f%% |\n", 100.0 * wrong_unc / paths,
				100.0 * wrong_holm / paths);
	}
	free(t_single);
	free(t_holm);
}

/* ---------- main ---------- */

static void
usage(void)
{
	fprintf(stderr, "usage: sim [--paths P] [--steps N] [--seed S] [--edge-paths P] [--multi-paths P]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int			paths = 4000;
	int			edge_paths = 1000;
	int			multi_paths = 2000;
	long		steps = 10000;
	uint64_t	seed = 20261130;
	double		sd_d[N_NOISE];
	H0Result	h0[N_NOISE];
	MultiResult mr[2];
	int			i;
	int			j;
	int			k;

	for (i = 1; i < argc; i++)
	{
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--paths") == 0)
			paths = atoi(argv[++i]);
		else if (strcmp(argv[i], "--edge-paths") == 0)
			edge_paths = atoi(argv[++i]);
		else if (strcmp(argv[i], "--multi-paths") == 0)
			multi_paths = atoi(argv[++i]);
		else if (strcmp(argv[i], "--steps") == 0)
			steps = atol(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0)
			seed = strtoull(argv[++i], NULL, 10);
		else
			usage();
	}
	if (paths < 1 || edge_paths < 1 || multi_paths < 1 || steps < 200)
		usage();

	printf("seed %llu; %d paths x %ld bars for the zero-edge tables, %d for the edge tables, %d for the challengers; tau2 %g, min_n %d unless named\n",
		   (unsigned long long) seed, paths, steps, edge_paths, multi_paths,
		   RL_SEQ_DEFAULT_TAU2, RL_SEQ_DEFAULT_MIN_N);
	for (i = 0; i < N_NOISE; i++)
		sd_d[i] = pilot_sd((Noise) i, seed);

	/* 1. false rollbacks */
	for (i = 0; i < N_NOISE; i++)
		run_h0((Noise) i, paths, steps, seed, &h0[i]);
	printf("\n### False rollbacks: two zero-edge models, a look after every bar from bar 100 to bar %ld, %d paths\n\n",
		   steps, paths);
	printf("Share of paths rolled back at some look (standard error at 1%%: %.2f%%; at 5%%: %.2f%%).\n\n",
		   100 * sqrt(0.01 * 0.99 / paths), 100 * sqrt(0.05 * 0.95 / paths));
	printf("| market | mSPRT a=0.01 | mSPRT a=0.05 | mSPRT a=0.10 | two-sided p<=0.05 | t-test every bar a=0.01 | t-test every bar a=0.05 | t-test once at the end a=0.05 | naive Sharpe rule every bar | naive rule once at the end |\n");
	printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (i = 0; i < N_NOISE; i++)
		printf("| %s | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% (mean bar %.0f) | %.1f%% |\n",
			   noise_name[i], 100 * h0[i].seq[0][0], 100 * h0[i].seq[0][1],
			   100 * h0[i].seq[0][2], 100 * h0[i].seq_two[1],
			   100 * h0[i].t_every[0], 100 * h0[i].t_every[1],
			   100 * h0[i].t_end[1], 100 * h0[i].naive_every,
			   h0[i].first_naive_mean, 100 * h0[i].naive_end);

	printf("\n### The plug-in variance, tau2 and min_n: one-sided false rollbacks at alpha 0.01 / 0.05, same paths\n\n");
	printf("| market |");
	for (k = 0; k < N_SET; k++)
		printf(" tau2 %g, min_n %lld |", set_tau2[k], (long long) set_min_n[k]);
	printf("\n| --- |");
	for (k = 0; k < N_SET; k++)
		printf(" ---: |");
	printf("\n");
	for (i = 0; i < N_NOISE; i++)
	{
		printf("| %s |", noise_name[i]);
		for (k = 0; k < N_SET; k++)
			printf(" %.2f / %.2f%% |", 100 * h0[i].seq[k][0],
				   100 * h0[i].seq[k][1]);
		printf("\n");
	}

	/* 2. bars until rollback */
	printf("\n### Bars until rollback against the edge\n");
	run_edge(GAUSS, edge_paths, steps, seed, sd_d[GAUSS], stdout);
	run_edge(GARCH_T3, edge_paths, steps, seed, sd_d[GARCH_T3], stdout);
	fflush(stdout);

	/* 3. challengers */
	run_multi_h0(GAUSS, multi_paths, steps, seed, &mr[0]);
	run_multi_h0(GARCH_T3, multi_paths, steps, seed, &mr[1]);
	printf("\n### Eight zero-edge challengers, a look after every bar from bar 100 to bar %ld, %d paths: share of paths where any challenger is promoted\n\n",
		   steps, multi_paths);
	printf("| market | alpha | no correction | Bonferroni (alpha/8) | Holm at every bar | repeated t-test, no correction | naive: a challenger's Sharpe above the champion's |\n");
	printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	for (i = 0; i < 2; i++)
		for (j = 0; j < N_ALPHA; j++)
			printf("| %s | %.2f | %.2f%% | %.2f%% | %.2f%% | %.1f%% | %.1f%% |\n",
				   noise_name[i == 0 ? GAUSS : GARCH_T3], alphas[j],
				   100 * mr[i].any[j][0], 100 * mr[i].any[j][1],
				   100 * mr[i].any[j][2], 100 * mr[i].t_every[j],
				   100 * mr[i].naive);
	printf("\n");
	for (i = 0; i < 2; i++)
		printf("%s: Holm applied at every bar %s Holm applied once to the final p-values, on every path.\n",
			   noise_name[i == 0 ? GAUSS : GARCH_T3],
			   mr[i].holm_consistent ? "agrees with" : "DISAGREES with");
	run_multi_edge(GAUSS, edge_paths, steps, seed, sd_d[GAUSS], stdout);
	run_multi_edge(GARCH_T3, edge_paths, steps, seed, sd_d[GARCH_T3], stdout);
	return 0;
}
