/*-------------------------------------------------------------------------
 *
 * sequential.h
 *	  The paired, always-valid sequential test behind automatic rollback
 *	  (the champion against its predecessor) and promotion (a challenger
 *	  against the champion): a normal-mixture SPRT (mSPRT; Robbins 1970;
 *	  Johari, Pekelis and Walsh, "Always valid inference", 2017) on the
 *	  per-bar differences d_t of two versions' net log returns on the same
 *	  bars, plus Holm's correction for several challengers at once.
 *
 * Plain C99: no postgres.h, no allocation.  Functions that can fail return
 * an RlSeqStatus and, on failure, write a lower-case message of at most
 * RL_SEQ_ERRLEN (= RL_ENV_ERRLEN) bytes into "err", which may be NULL; on
 * success err is set to the empty string (the style of env.h).
 *
 * The statistic.  With n observations, mean m and sample variance s^2
 * (divisor n - 1), z^2 = n m^2 / s^2 and
 *
 *	  log Lambda_n = -1/2 log(1 + n tau2) + z^2 / 2 * n tau2 / (1 + n tau2)
 *
 * which is Johari et al.'s mixture likelihood ratio for H0: mean(d) = 0
 *
 *	  Lambda_n = sqrt(v / (v + n T)) exp(n^2 T m^2 / (2 v (v + n T)))
 *
 * with v = s^2 and mixture variance T = tau2 * s^2: tau2 is the mixture
 * variance of the standardised effect mean(d) / sd(d), the per-bar Sharpe
 * ratio of the difference.  Standardising makes one default fit every bar
 * frequency (1-minute and daily log returns differ in scale by a factor
 * of about 20; an absolute tau^2 would be tuned to one of them only).
 *
 * Default tau2 = 0.01 (tau = 0.1 standard deviations of d per bar).  At n
 * the test needs z^2 >= (1 + 1/(n tau2)) (2 log(1/alpha) + log(1 + n tau2));
 * for a given n this is lowest when n tau2 is about 12 (alpha 0.01), so
 * tau2 = 0.01 is the best mixture for decisions near n = 1,200 bars, where
 * an effect of about 0.1 sd per bar is decided (a daily-bar Sharpe ratio
 * difference of 1.6 a year).  Smaller effects cannot be told from noise
 * within a probation period anyway; larger ones lose little: in the
 * simulation (bench/monitor/README.md, alpha 0.01, Gaussian) the median
 * bars until rollback are 1,035 at 0.1 sd, 267 at 0.2 and 144 at 0.3
 * (tau2 = 0.1 would give 1,127, 231 and 110; tau2 = 0.001 1,540, 585 and
 * 361).
 *
 * The plug-in variance.  Under H0 with a known variance, Lambda_n is a
 * non-negative martingale with mean 1, so P(sup_n Lambda_n >= 1/alpha) <=
 * alpha (Ville's inequality): a look after every bar costs nothing.  With
 * s^2 in place of the variance it holds only approximately, better as n
 * grows (s^2 converges to the variance and the statistic to the known-
 * variance one): early on s^2 is noisy and z is a t statistic with heavier
 * tails than the normal one the threshold assumes, so tiny samples inflate
 * false alarms, more so with a large tau2 (whose threshold on |z| is low
 * already at small n).  min_n guards this: no look, no running maximum
 * and no decision before n >= min_n observations.  The default min_n = 100
 * makes s^2 good to about 14% (the sd of s^2 / var for Gaussian d) and
 * the t and normal tails close; it is below the few hundred bars the issue
 * allows for a rollback.  In the simulation (10,000 looks, alpha 0.01,
 * one-sided) tau2 = 1 with min_n = 2 rolls back two zero-edge models on
 * 1.8% of paths, above alpha; with min_n = 100 on 0.15%; the defaults on
 * 0.3 to 0.5%, with Gaussian, Student-t(3) and GARCH(1,1) returns alike.
 *
 * One-sided decisions use this two-sided mixture and require the sample
 * mean to have the wanted sign: the false-decision rate stays below alpha
 * (about alpha / 2 for a symmetric d), at the price of a test slightly
 * slower than a one-sided mixture would be.
 *
 * A state is a few doubles (rl_seq_serialize), fit for a table row.
 *
 * src/core/sequential.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RL_SEQUENTIAL_H
#define RL_SEQUENTIAL_H

#include <stdbool.h>
#include <stdint.h>

#include "env.h"

#define RL_SEQ_ERRLEN RL_ENV_ERRLEN

/* Defaults; see the header comment for the reasons. */
#define RL_SEQ_DEFAULT_TAU2 0.01
#define RL_SEQ_DEFAULT_MIN_N 100

/* log Lambda is capped here (p = exp(-700), about 1e-304, stays > 0). */
#define RL_SEQ_MAX_LOG_LAMBDA 700.0

/* Doubles of a serialised state. */
#define RL_SEQ_STATE_LEN 7

typedef enum RlSeqStatus
{
	RL_SEQ_OK = 0,
	RL_SEQ_BAD_ARG = 1,			/* NULL pointer, parameter out of range,
								 * states with different parameters */
	RL_SEQ_NOT_FINITE = 2,		/* a value (or the state it would give) is
								 * not finite: refused, the state unchanged */
	RL_SEQ_BAD_STATE = 3		/* a serialised state is inconsistent */
} RlSeqStatus;

/* Decision of rl_seq_test. */
#define RL_SEQ_CONTINUE 0		/* no decision: keep looking */
#define RL_SEQ_REJECT 1			/* H0 rejected for the side asked */

/*
 * Running state of one paired comparison.  Parameters (tau2, min_n) live in
 * the state because the running maxima depend on them.
 */
typedef struct RlSeqState
{
	int64_t		n;				/* observations (bars both versions traded) */
	double		mean;			/* Welford running mean of d */
	double		m2;				/* Welford sum of squared deviations */
	double		tau2;			/* mixture variance of mean(d) / sd(d) */
	int64_t		min_n;			/* first look at n = min_n (>= 2) */
	double		max_llr_pos;	/* max log Lambda_k, min_n <= k <= n, over
								 * looks with mean_k > 0; 0 before any */
	double		max_llr_neg;	/* the same over looks with mean_k < 0 */
} RlSeqState;

/* What the test says about a state. */
typedef struct RlSeqResult
{
	int64_t		n;
	double		mean;
	double		variance;		/* sample variance (divisor n - 1); 0 if n < 2 */
	double		log_lambda;		/* log Lambda_n; 0 (no evidence) when
								 * n < min_n or the variance is 0 */
	double		log_threshold;	/* log(1 / alpha) */
	double		p_value;		/* always-valid two-sided p:
								 * min(1, 1 / max_k Lambda_k), monotone */
	double		p_value_side;	/* the same over the looks whose mean had
								 * the sign asked (one-sided, >= p_value) */
	int			side;			/* +1 or -1, as asked */
	int			decision;		/* RL_SEQ_CONTINUE or RL_SEQ_REJECT */
	const char *reason;			/* static text: why this decision */
} RlSeqResult;

/*
 * An empty state.  tau2 finite in (0, 1e6]; min_n in [2, 2^31).  Pass
 * RL_SEQ_DEFAULT_TAU2 and RL_SEQ_DEFAULT_MIN_N without a better reason.
 */
extern int	rl_seq_init(RlSeqState *s, double tau2, int64_t min_n, char *err);

/*
 * Add one paired observation d (say the champion's net log return minus
 * its predecessor's on one bar): O(1), and a look if n >= min_n.  A
 * non-finite d, or one that would make the state overflow, is refused with
 * RL_SEQ_NOT_FINITE and leaves the state unchanged.  Missing data is not an
 * observation: skip the bar, never pass 0 for it.
 */
extern int	rl_seq_add(RlSeqState *s, double d, char *err);

/* rl_seq_add(s, a - b) after checking that a and b are both finite. */
extern int	rl_seq_add_pair(RlSeqState *s, double a, double b, char *err);

/*
 * Append "later" (observations after those of "into") to "into": exact
 * count, mean and M2 (Chan et al.); the merged state is looked at once, at
 * its end, and later's own maxima are dropped unless "into" is empty (they
 * describe looks at prefixes of later alone, which are not prefixes of the
 * merged sequence).  Fewer looks keep the p-value valid.  Both states must
 * have the same tau2 and min_n.
 */
extern int	rl_seq_merge(RlSeqState *into, const RlSeqState *later,
						 char *err);

/*
 * The test at significance alpha in (0, 1) for the one-sided alternative
 * side (+1: mean(d) > 0, -1: mean(d) < 0): RL_SEQ_REJECT when n >= min_n,
 * the sample mean has that sign and log Lambda_n >= log(1 / alpha).
 */
extern int	rl_seq_test(const RlSeqState *s, double alpha, int side,
						RlSeqResult *r, char *err);

/*
 * log Lambda for n observations of mean m and sample variance var, with
 * the state's parametrisation (0 when n < 2 or var <= 0); capped at
 * RL_SEQ_MAX_LOG_LAMBDA.  For reports and tests; rl_seq_add uses it.
 */
extern double rl_seq_log_lambda(int64_t n, double mean, double var,
								double tau2);

/*
 * The state as RL_SEQ_STATE_LEN doubles: n, mean, m2, tau2, min_n,
 * max_llr_pos, max_llr_neg (n and min_n are exact integers below 2^53).
 */
extern void rl_seq_serialize(const RlSeqState *s,
							 double out[RL_SEQ_STATE_LEN]);

/* Back from rl_seq_serialize; RL_SEQ_BAD_STATE for what it cannot write. */
extern int	rl_seq_deserialize(const double in[RL_SEQ_STATE_LEN],
							   RlSeqState *s, char *err);

/*
 * Holm's step-down correction for k simultaneous hypotheses (several
 * challengers against one champion): p[0 .. k-1] always-valid p-values
 * (for promotion, each challenger's p_value_side with side +1), alpha in
 * (0, 1].  reject[i] is true for the hypotheses rejected, p_adj[i] (may be
 * NULL) gets Holm's adjusted p-value (reject[i] iff p_adj[i] <= alpha) and
 * n_reject (may be NULL) the count.  O(k^2), no allocation; k >= 0.
 *
 * Holm rather than Bonferroni: both hold under any dependence between the
 * p-values (the challengers are all compared with the same champion, so
 * their statistics are positively correlated), both have the same
 * family-wise error when every challenger is a null (Holm's first step is
 * Bonferroni's), and Holm never rejects less and rejects more when several
 * challengers are really better.  Holm is monotone (lower p-values never
 * un-reject), and always-valid p-values only fall: whatever it rejects at
 * any look it also rejects on the p-values at the end, so applying it at
 * every look keeps the family-wise error over all looks at alpha.  Pass as
 * k every challenger compared in the family so far (or the cap, 8), not
 * only those present now.
 */
extern int	rl_seq_holm(const double *p, int32_t k, double alpha,
						double *p_adj, bool *reject, int32_t *n_reject,
						char *err);

#endif							/* RL_SEQUENTIAL_H */
