/*-------------------------------------------------------------------------
 *
 * sequential.c
 *	  The paired mixture SPRT and Holm's correction (see sequential.h).
 *
 * src/core/sequential.c
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "sequential.h"

/* Largest n (and min_n) that a double holds exactly. */
#define SEQ_MAX_COUNT 9007199254740992.0	/* 2^53 */

/* Write a formatted message into err (if not NULL) and return code. */
static int
seq_fail(char *err, int code, const char *fmt,...)
#ifdef __GNUC__
			__attribute__((format(printf, 3, 4)))
#endif
			;

static int
seq_fail(char *err, int code, const char *fmt,...)
{
	va_list		ap;

	if (err != NULL)
	{
		va_start(ap, fmt);
		vsnprintf(err, RL_SEQ_ERRLEN, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Success clears the message so a stale one is never reported. */
static int
seq_ok(char *err)
{
	if (err != NULL)
		err[0] = '\0';
	return RL_SEQ_OK;
}

/* Parameters are checked in one place for init and deserialise. */
static int
check_params(double tau2, int64_t min_n, char *err)
{
	if (!isfinite(tau2) || tau2 <= 0.0 || tau2 > 1e6)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"tau2 must be finite and in (0, 1e6], got %g", tau2);
	if (min_n < 2 || min_n > INT32_MAX)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"min_n must be in [2, %d], got %lld", (int) INT32_MAX,
						(long long) min_n);
	return RL_SEQ_OK;
}

/* An empty comparison: no observation, no look, p = 1. */
int
rl_seq_init(RlSeqState *s, double tau2, int64_t min_n, char *err)
{
	int			rc;

	if (s == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG, "state must not be NULL");
	rc = check_params(tau2, min_n, err);
	if (rc != RL_SEQ_OK)
		return rc;
	s->n = 0;
	s->mean = 0.0;
	s->m2 = 0.0;
	s->tau2 = tau2;
	s->min_n = min_n;
	s->max_llr_pos = 0.0;
	s->max_llr_neg = 0.0;
	return seq_ok(err);
}

/*
 * The standardised closed form of sequential.h: with z^2 = n m^2 / var and
 * x = n tau2, log Lambda = -log(1 + x) / 2 + z^2 x / (2 (1 + x)).  No
 * variance means no scale to judge the mean by: no evidence (0), even for
 * a constant non-zero d.
 */
double
rl_seq_log_lambda(int64_t n, double mean, double var, double tau2)
{
	double		x;
	double		z2;
	double		llr;

	if (n < 2 || !(var > 0.0) || !(tau2 > 0.0))
		return 0.0;
	x = (double) n * tau2;
	z2 = (double) n * (mean * mean / var);
	llr = -0.5 * log1p(x) + 0.5 * z2 * (x / (1.0 + x));
	if (!(llr <= RL_SEQ_MAX_LOG_LAMBDA))	/* also catches NaN from inf */
		llr = RL_SEQ_MAX_LOG_LAMBDA;
	return llr;
}

/* A look at the state as it is now: raise the running maximum of its side. */
static void
seq_look(RlSeqState *s)
{
	double		llr;

	if (s->n < s->min_n || s->n < 2)
		return;
	llr = rl_seq_log_lambda(s->n, s->mean, s->m2 / (double) (s->n - 1),
							s->tau2);
	if (s->mean > 0.0 && llr > s->max_llr_pos)
		s->max_llr_pos = llr;
	else if (s->mean < 0.0 && llr > s->max_llr_neg)
		s->max_llr_neg = llr;
}

/* Welford's update, computed aside so that a refusal changes nothing. */
int
rl_seq_add(RlSeqState *s, double d, char *err)
{
	int64_t		n;
	double		delta;
	double		mean;
	double		m2;

	if (s == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG, "state must not be NULL");
	if (!isfinite(d))
		return seq_fail(err, RL_SEQ_NOT_FINITE,
						"observation %lld is %g: only finite paired values are observations",
						(long long) (s->n + 1), d);
	if ((double) s->n >= SEQ_MAX_COUNT)
		return seq_fail(err, RL_SEQ_BAD_ARG, "too many observations");
	n = s->n + 1;
	delta = d - s->mean;
	mean = s->mean + delta / (double) n;
	m2 = s->m2 + delta * (d - mean);
	if (!isfinite(delta) || !isfinite(mean) || !isfinite(m2))
		return seq_fail(err, RL_SEQ_NOT_FINITE,
						"observation %lld (%g) overflows the running variance",
						(long long) n, d);
	s->n = n;
	s->mean = mean;
	s->m2 = m2 > 0.0 ? m2 : 0.0;
	seq_look(s);
	return seq_ok(err);
}

/* The pair is refused as a whole if either side is missing or not finite. */
int
rl_seq_add_pair(RlSeqState *s, double a, double b, char *err)
{
	if (s == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG, "state must not be NULL");
	if (!isfinite(a) || !isfinite(b))
		return seq_fail(err, RL_SEQ_NOT_FINITE,
						"pair %lld is (%g, %g): only finite paired values are observations",
						(long long) (s->n + 1), a, b);
	return rl_seq_add(s, a - b, err);
}

/* Chan et al.'s pairwise combination; one look at the merged end. */
int
rl_seq_merge(RlSeqState *into, const RlSeqState *later, char *err)
{
	double		na;
	double		nb;
	double		n;
	double		delta;
	double		mean;
	double		m2;

	if (into == NULL || later == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG, "states must not be NULL");
	if (into->tau2 != later->tau2 || into->min_n != later->min_n)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"cannot merge states with different parameters (tau2 %g and %g, min_n %lld and %lld)",
						into->tau2, later->tau2, (long long) into->min_n,
						(long long) later->min_n);
	if (later->n == 0)
		return seq_ok(err);
	if (into->n == 0)
	{
		*into = *later;
		return seq_ok(err);
	}
	na = (double) into->n;
	nb = (double) later->n;
	n = na + nb;
	if (n > SEQ_MAX_COUNT)
		return seq_fail(err, RL_SEQ_BAD_ARG, "too many observations");
	delta = later->mean - into->mean;
	mean = into->mean + delta * (nb / n);
	m2 = into->m2 + later->m2 + delta * delta * (na / n) * nb;
	if (!isfinite(mean) || !isfinite(m2))
		return seq_fail(err, RL_SEQ_NOT_FINITE,
						"merging overflows the running variance");
	into->n += later->n;
	into->mean = mean;
	into->m2 = m2;
	seq_look(into);
	return seq_ok(err);
}

/* The decision rule of sequential.h, with the reason for status reports. */
int
rl_seq_test(const RlSeqState *s, double alpha, int side, RlSeqResult *r,
			char *err)
{
	double		var;

	if (s == NULL || r == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"state and result must not be NULL");
	if (!isfinite(alpha) || alpha <= 0.0 || alpha >= 1.0)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"alpha must be in (0, 1), got %g", alpha);
	if (side != 1 && side != -1)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"side must be +1 or -1, got %d", side);
	var = s->n >= 2 ? s->m2 / (double) (s->n - 1) : 0.0;
	r->n = s->n;
	r->mean = s->mean;
	r->variance = var;
	r->log_lambda = s->n >= s->min_n ?
		rl_seq_log_lambda(s->n, s->mean, var, s->tau2) : 0.0;
	r->log_threshold = -log(alpha);
	r->p_value = exp(-fmax(s->max_llr_pos, s->max_llr_neg));
	r->p_value_side = exp(-(side > 0 ? s->max_llr_pos : s->max_llr_neg));
	r->side = side;
	r->decision = RL_SEQ_CONTINUE;
	if (s->n < s->min_n)
		r->reason = "fewer observations than min_n";
	else if (!(var > 0.0))
		r->reason = "the differences have no variance";
	else if (s->mean * (double) side <= 0.0)
		r->reason = "the mean difference has the other sign";
	else if (r->log_lambda < r->log_threshold)
		r->reason = "the evidence is below the threshold";
	else
	{
		r->decision = RL_SEQ_REJECT;
		r->reason = "the evidence reaches the threshold";
	}
	return seq_ok(err);
}

/* A fixed order of doubles; integers are exact below 2^53. */
void
rl_seq_serialize(const RlSeqState *s, double out[RL_SEQ_STATE_LEN])
{
	out[0] = (double) s->n;
	out[1] = s->mean;
	out[2] = s->m2;
	out[3] = s->tau2;
	out[4] = (double) s->min_n;
	out[5] = s->max_llr_pos;
	out[6] = s->max_llr_neg;
}

/* A row may have been edited by hand: check everything a state implies. */
int
rl_seq_deserialize(const double in[RL_SEQ_STATE_LEN], RlSeqState *s,
				   char *err)
{
	int			i;
	int			rc;

	if (in == NULL || s == NULL)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"state and input must not be NULL");
	for (i = 0; i < RL_SEQ_STATE_LEN; i++)
		if (!isfinite(in[i]))
			return seq_fail(err, RL_SEQ_BAD_STATE,
							"state element %d is %g: must be finite", i, in[i]);
	if (in[0] < 0.0 || in[0] > SEQ_MAX_COUNT || in[0] != floor(in[0]))
		return seq_fail(err, RL_SEQ_BAD_STATE,
						"state count %g is not an integer in [0, 2^53]", in[0]);
	if (in[4] != floor(in[4]) || in[4] < 2.0 || in[4] > (double) INT32_MAX)
		return seq_fail(err, RL_SEQ_BAD_STATE,
						"state min_n %g is not an integer in [2, %d]", in[4],
						(int) INT32_MAX);
	rc = check_params(in[3], (int64_t) in[4], err);
	if (rc != RL_SEQ_OK)
		return RL_SEQ_BAD_STATE;
	if (in[2] < 0.0 || (in[0] < 2.0 && in[2] != 0.0) ||
		(in[0] == 0.0 && in[1] != 0.0))
		return seq_fail(err, RL_SEQ_BAD_STATE,
						"state with %g observations cannot have mean %g and m2 %g",
						in[0], in[1], in[2]);
	if (in[5] < 0.0 || in[5] > RL_SEQ_MAX_LOG_LAMBDA ||
		in[6] < 0.0 || in[6] > RL_SEQ_MAX_LOG_LAMBDA ||
		(in[0] < in[4] && (in[5] != 0.0 || in[6] != 0.0)))
		return seq_fail(err, RL_SEQ_BAD_STATE,
						"state maxima %g and %g are impossible with %g observations and min_n %g",
						in[5], in[6], in[0], in[4]);
	s->n = (int64_t) in[0];
	s->mean = in[1];
	s->m2 = in[2];
	s->tau2 = in[3];
	s->min_n = (int64_t) in[4];
	s->max_llr_pos = in[5];
	s->max_llr_neg = in[6];
	return seq_ok(err);
}

/*
 * Holm through adjusted p-values, without a sort buffer: visit the
 * p-values in increasing (p, index) order by selection; the r-th (from 0)
 * gets adj = min(1, max over visited ranks q <= r of (k - q) p_(q)).  H_i
 * is rejected iff adj_i <= alpha, which is the step-down rule: reject
 * p_(0), p_(1), ... while p_(r) <= alpha / (k - r).  Ties get the same
 * adjusted value.
 */
int
rl_seq_holm(const double *p, int32_t k, double alpha, double *p_adj,
			bool *reject, int32_t *n_reject, char *err)
{
	int32_t		r;
	int32_t		i;
	int32_t		prev = -1;		/* index visited last */
	int32_t		count = 0;
	double		running = 0.0;

	if (k < 0 || (k > 0 && (p == NULL || reject == NULL)))
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"k must be >= 0 and p and reject must not be NULL");
	if (!isfinite(alpha) || alpha <= 0.0 || alpha > 1.0)
		return seq_fail(err, RL_SEQ_BAD_ARG,
						"alpha must be in (0, 1], got %g", alpha);
	for (i = 0; i < k; i++)
		if (!isfinite(p[i]) || p[i] < 0.0 || p[i] > 1.0)
			return seq_fail(err, RL_SEQ_BAD_ARG,
							"p-value %d is %g: must be in [0, 1]", (int) i,
							p[i]);
	for (r = 0; r < k; r++)
	{
		int32_t		best = -1;
		double		v;

		/* the smallest (p, index) after (p[prev], prev) */
		for (i = 0; i < k; i++)
		{
			if (prev >= 0 &&
				!(p[i] > p[prev] || (p[i] == p[prev] && i > prev)))
				continue;
			if (best < 0 || p[i] < p[best])
				best = i;
		}
		v = (double) (k - r) * p[best];
		if (v > running)
			running = v;
		if (running > 1.0)
			running = 1.0;
		if (p_adj != NULL)
			p_adj[best] = running;
		reject[best] = running <= alpha;
		if (reject[best])
			count++;
		prev = best;
	}
	if (n_reject != NULL)
		*n_reject = count;
	return seq_ok(err);
}
