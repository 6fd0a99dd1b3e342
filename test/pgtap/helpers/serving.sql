-- Test-only helpers for serving (ARCHITECTURE.md "Serving").  Include with \ir after
-- helpers/checkpoint.sql (schema rl_test, tensor_specs, f32le_hex, le64).
--
--   rl_test.serving_checkpoint(seed, window_size, hidden_size, n_features)
--       a checkpoint whose weights are pseudo-random (hashint4) and large
--       enough (2 / sqrt(fan_in)) for the greedy action to vary with the
--       observation; sigma 0.001
--   rl_test.serving_model(agent, seed, deploy) -> version
--       import, validate and optionally deploy such a checkpoint
--   rl_test.ref_forward(seed, obs, hidden) -> float8[]
--       an independent forward pass of that checkpoint in SQL and float8:
--       the three probabilities, then the value
--   rl_test.ref_obs(relation, symbol, at, position, window, sigma)
--       the observation ARCHITECTURE.md "The trading environment" defines, built in SQL from a
--       relation (symbol text, ts timestamptz, price, features float4[])
--   rl_test.argmax(float4[]) -> integer (0-based, first on ties)

-- Element i of parameter tensor ord (1-based, state_dict order): weights
-- (odd ord) uniform in +-2/sqrt(fan_in), biases in +-0.1, as float4.
CREATE FUNCTION rl_test.sweight(seed int, ord int, i int, fan_in int) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT ((hashint4(seed * 1000003 + ord * 7919 + i) % 10000)::float8 / 10000
            * CASE WHEN ord % 2 = 1 THEN 2 / sqrt(fan_in::float8) ELSE 0.1::float8 END)::float4::float8
$$;

CREATE FUNCTION rl_test.serving_checkpoint(seed int, window_size int DEFAULT 32,
                                           hidden_size int DEFAULT 64, n_features int DEFAULT 0)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT
AS $$
DECLARE
    obs_dim int := window_size + 1 + n_features;
    spec record;
    n int;
    hdr text;
    hdr_bytes bytea;
    data_hex text := '';
    tensor_hex text;
    pos bigint := 0;
BEGIN
    hdr := format('{"__metadata__":{"format":"rl_mlops/1","window":"%s","n_features":"%s",'
                  '"obs_dim":"%s","hidden":"%s","n_actions":"3","sigma":"0.001"}',
                  window_size, n_features, obs_dim, hidden_size);
    FOR spec IN SELECT * FROM rl_test.tensor_specs(obs_dim, hidden_size, false) ORDER BY ord LOOP
        n := spec.shape[1] * coalesce(spec.shape[2], 1);
        SELECT string_agg(rl_test.f32le_hex(rl_test.sweight(seed, spec.ord, i,
                              CASE spec.ord WHEN 1 THEN obs_dim ELSE hidden_size END)::float4), '' ORDER BY i)
          INTO tensor_hex FROM generate_series(0, n - 1) AS i;
        hdr := hdr || format(',"%s":{"dtype":"F32","shape":[%s],"data_offsets":[%s,%s]}',
                             spec.name, array_to_string(spec.shape, ','), pos, pos + 4 * n);
        data_hex := data_hex || tensor_hex;
        pos := pos + 4 * n;
    END LOOP;
    hdr_bytes := convert_to(hdr || '}', 'UTF8');
    hdr_bytes := hdr_bytes || convert_to(repeat(' ', (8 - length(hdr_bytes) % 8) % 8), 'UTF8');
    RETURN rl_test.le64(length(hdr_bytes)) || hdr_bytes || decode(data_hex, 'hex');
END
$$;

CREATE FUNCTION rl_test.serving_model(p_agent text, p_seed int, p_deploy boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    a rl_mlops.agents;
    v text;
BEGIN
    SELECT * INTO STRICT a FROM rl_mlops.agents WHERE name = p_agent;
    v := rl_mlops.import_model(p_agent, rl_test.serving_checkpoint(p_seed, a.window_size, a.hidden_size, a.n_features));
    PERFORM rl_mlops.validate_model(p_agent, v);
    IF p_deploy THEN
        PERFORM rl_mlops.deploy_model(p_agent, v);
    END IF;
    RETURN v;
END
$$;

-- TradingActorCritic in SQL: trunk Linear-tanh-Linear-tanh, softmax actor,
-- linear critic (weights [out, in] row-major, as PyTorch stores them).
CREATE FUNCTION rl_test.ref_forward(seed int, obs float4[], hidden int) RETURNS float8[]
LANGUAGE sql IMMUTABLE STRICT
AS $$
    WITH x AS (SELECT k::int - 1 AS k, v::float8 AS v FROM unnest(obs) WITH ORDINALITY AS u(v, k)),
    h1 AS (SELECT o.j, tanh(sum(rl_test.sweight(seed, 1, o.j * cardinality(obs) + x.k, cardinality(obs)) * x.v)
                            + rl_test.sweight(seed, 2, o.j, 1)) AS v
             FROM generate_series(0, hidden - 1) AS o(j), x GROUP BY o.j),
    h2 AS (SELECT o.j, tanh(sum(rl_test.sweight(seed, 3, o.j * hidden + h1.j, hidden) * h1.v)
                            + rl_test.sweight(seed, 4, o.j, 1)) AS v
             FROM generate_series(0, hidden - 1) AS o(j), h1 GROUP BY o.j),
    logits AS (SELECT o.a, sum(rl_test.sweight(seed, 5, o.a * hidden + h2.j, hidden) * h2.v)
                           + rl_test.sweight(seed, 6, o.a, 1) AS v
                 FROM generate_series(0, 2) AS o(a), h2 GROUP BY o.a),
    e AS (SELECT a, exp(v - max(v) OVER ()) AS e FROM logits)
    SELECT array_agg(e / (SELECT sum(e) FROM e) ORDER BY a)
           || (SELECT sum(rl_test.sweight(seed, 7, h2.j, hidden) * h2.v) + rl_test.sweight(seed, 8, 0, 1) FROM h2)
      FROM e
$$;

-- The greedy action of a probability vector.
CREATE FUNCTION rl_test.argmax(p float4[]) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT (i - 1)::int FROM unnest(p) WITH ORDINALITY AS u(v, i) ORDER BY v DESC, i LIMIT 1 $$;

-- [r_{t-W+1} .. r_t] / sigma, the position, then the features of row t,
-- where t is the last row of the symbol at or before "at".
CREATE FUNCTION rl_test.ref_obs(rel regclass, sym text, at timestamptz, pos int,
                                window_size int, sigma float8)
RETURNS float4[]
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r float4[];
    f float4[];
BEGIN
    EXECUTE format($q$
        SELECT array_agg((ln(p / prev) / $3)::float4 ORDER BY ts)
          FROM (SELECT ts, price::float8 AS p, lag(price::float8) OVER (ORDER BY ts) AS prev
                  FROM (SELECT * FROM %s WHERE symbol = $1 AND ts <= $2
                         ORDER BY ts DESC LIMIT $4 + 1) last_rows) w
         WHERE prev IS NOT NULL$q$, rel)
      INTO r USING sym, at, sigma, window_size;
    EXECUTE format('SELECT features FROM %s WHERE symbol = $1 AND ts <= $2 ORDER BY ts DESC LIMIT 1', rel)
      INTO f USING sym, at;
    RETURN r || pos::float4 || coalesce(f, '{}');
END
$$;
