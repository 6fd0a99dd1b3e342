-- Test-only helpers: safetensors checkpoints built in SQL (ARCHITECTURE.md "The network and its checkpoint"),
-- valid or corrupted on purpose.  Include with \ir inside a test's
-- transaction, after CREATE EXTENSION; everything lives in schema rl_test
-- and disappears with the test's ROLLBACK.
--
--   rl_test.checkpoint(seed, window_size, hidden_size, n_features,
--                      corrupt, optimizer, sigma) -> bytea
--
-- corrupt (NULL = a valid checkpoint):
--   random          4096 pseudo-random bytes
--   empty           zero bytes
--   truncated       the last 100 bytes cut off (tensor data runs past the end)
--   truncated_header  only the first 20 bytes
--   header_len      header length prefix larger than the whole file
--   huge_header     header length prefix 2^64 - 1
--   not_json        header bytes that are not JSON
--   no_metadata     no __metadata__ entry
--   offsets         actor.bias data_offsets moved 1,000,000 bytes out
--   overlap         critic.bias data_offsets point into critic.weight
--   dtype           trunk.0.bias declared I8 (an integer dtype)
--   missing         critic.bias absent
--   extra           an additional tensor "extra.weight"
--   duplicate       actor.bias named twice in the header
--   shape           trunk.0.weight declared [obs_dim, hidden] (same size,
--                   wrong shape for the agent)
--   shape_size      trunk.0.bias declared [hidden + 1] over hidden floats
--   nan / inf       element 0 of trunk.2.weight is NaN / +Infinity
--   huge            actor and critic weights 3e38 over a saturated trunk
--                   (trunk.2.bias 50): finite, so the parser accepts them,
--                   but the forward pass overflows
--   partial_optim   optimizer state without optim.exp_avg_sq.critic.bias
--
-- Also: rl_test.bars (a small price table), rl_test.snapshot(agent) (the
-- counts an error must not change), rl_test.add_model(agent, seed,
-- deploy, reason) (import + validate [+ deploy]), rl_test.error_of(sql)
-- ("SQLSTATE | message | detail") and rl_test.as_role(role, sql) (run as
-- another role: "ok: <value>" or "SQLSTATE: message").

CREATE SCHEMA rl_test;

-- Little-endian float32 bytes of x, as hex.
CREATE FUNCTION rl_test.f32le_hex(x float4) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT regexp_replace(encode(float4send(x), 'hex'), '(..)(..)(..)(..)', '\4\3\2\1') $$;

-- Little-endian uint64 bytes of n (0 <= n < 2^64).
CREATE FUNCTION rl_test.le64(n numeric) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT decode(string_agg(lpad(to_hex((div(n, 256::numeric ^ i) % 256)::int), 2, '0'),
                             '' ORDER BY i), 'hex')
      FROM generate_series(0, 7) AS i
$$;

-- The network's tensors in PyTorch state_dict order (ARCHITECTURE.md "The trading environment").
CREATE FUNCTION rl_test.tensor_specs(obs_dim int, hidden int, optimizer boolean)
RETURNS TABLE (ord int, name text, shape int[])
LANGUAGE sql IMMUTABLE
AS $$
    WITH params(ord, name, shape) AS (VALUES
        (1, 'trunk.0.weight', ARRAY[hidden, obs_dim]),
        (2, 'trunk.0.bias',   ARRAY[hidden]),
        (3, 'trunk.2.weight', ARRAY[hidden, hidden]),
        (4, 'trunk.2.bias',   ARRAY[hidden]),
        (5, 'actor.weight',   ARRAY[3, hidden]),
        (6, 'actor.bias',     ARRAY[3]),
        (7, 'critic.weight',  ARRAY[1, hidden]),
        (8, 'critic.bias',    ARRAY[1]))
    SELECT ord, name, shape FROM params
    UNION ALL
    SELECT 100 + ord, 'optim.exp_avg.' || name, shape FROM params WHERE optimizer
    UNION ALL
    SELECT 200 + ord, 'optim.exp_avg_sq.' || name, shape FROM params WHERE optimizer
    UNION ALL
    SELECT 300, 'optim.step', ARRAY[1] WHERE optimizer
$$;

CREATE FUNCTION rl_test.checkpoint(
    seed int DEFAULT 1,
    window_size int DEFAULT 32,
    hidden_size int DEFAULT 64,
    n_features int DEFAULT 0,
    corrupt text DEFAULT NULL,
    optimizer boolean DEFAULT false,
    sigma text DEFAULT '0.001')
RETURNS bytea
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    obs_dim int := window_size + 1 + n_features;
    spec record;
    hdr text;
    data_hex text := '';
    pos bigint := 0;
    nbytes bigint;
    tensor_hex text;
    shape_json text;
    dtype text;
    b bigint;
    e bigint;
    hdr_bytes bytea;
    result bytea;
    actor_bias_entry text;
    c text := coalesce(corrupt, 'none');
BEGIN
    IF c NOT IN ('none',
        'random', 'empty', 'truncated', 'truncated_header', 'header_len', 'huge_header',
        'not_json', 'no_metadata', 'offsets', 'overlap', 'dtype', 'missing', 'extra',
        'duplicate', 'shape', 'shape_size', 'nan', 'inf', 'huge', 'partial_optim') THEN
        RAISE EXCEPTION 'rl_test.checkpoint: unknown corruption "%"', c;
    END IF;
    IF c = 'empty' THEN
        RETURN ''::bytea;
    END IF;
    IF c = 'random' THEN
        SELECT string_agg(sha256(convert_to(format('%s/%s', seed, i), 'UTF8')), ''::bytea ORDER BY i)
          INTO result FROM generate_series(1, 128) AS i;
        RETURN result;
    END IF;

    IF c = 'no_metadata' THEN
        hdr := '{';
    ELSE
        hdr := format('{"__metadata__":{"format":"rl_mlops/1","window":"%s","n_features":"%s",'
                      '"obs_dim":"%s","hidden":"%s","n_actions":"3","sigma":"%s"}',
                      window_size, n_features, obs_dim, hidden_size, sigma);
    END IF;

    FOR spec IN
        SELECT s.* FROM rl_test.tensor_specs(obs_dim, hidden_size,
                                             optimizer OR c = 'partial_optim') s
         WHERE NOT (c = 'missing' AND s.name = 'critic.bias')
           AND NOT (c = 'partial_optim' AND s.name = 'optim.exp_avg_sq.critic.bias')
        UNION ALL
        SELECT 50, 'extra.weight', ARRAY[4] WHERE c = 'extra'
        ORDER BY 1
    LOOP
        -- deterministic weights in [-0.1, 0.1]; optim.step is a count
        SELECT string_agg(rl_test.f32le_hex(
                   CASE
                     WHEN c = 'nan' AND spec.name = 'trunk.2.weight' AND i = 0 THEN 'NaN'::float4
                     WHEN c = 'inf' AND spec.name = 'trunk.2.weight' AND i = 0 THEN 'Infinity'::float4
                     WHEN c = 'huge' AND spec.name IN ('critic.weight', 'actor.weight') THEN 3e38::float4
                     WHEN c = 'huge' AND spec.name = 'trunk.2.bias' THEN 50::float4
                     WHEN spec.name = 'optim.step' THEN 7::float4
                     ELSE (0.1 * sin(seed * 1000.0 + spec.ord * 7919.0 + i))::float4
                   END), '' ORDER BY i)
          INTO tensor_hex
          FROM generate_series(0, (SELECT ((x[1])::bigint * coalesce(x[2], 1))::int - 1
                                     FROM (SELECT spec.shape AS x) s)) AS i;
        nbytes := length(tensor_hex) / 2;
        b := pos;
        e := pos + nbytes;
        shape_json := array_to_string(spec.shape, ',');
        dtype := 'F32';
        IF c = 'shape' AND spec.name = 'trunk.0.weight' THEN
            shape_json := format('%s,%s', spec.shape[2], spec.shape[1]);
        ELSIF c = 'shape_size' AND spec.name = 'trunk.0.bias' THEN
            shape_json := (spec.shape[1] + 1)::text;
        ELSIF c = 'dtype' AND spec.name = 'trunk.0.bias' THEN
            dtype := 'I8';
        ELSIF c = 'offsets' AND spec.name = 'actor.bias' THEN
            b := b + 1000000;
            e := e + 1000000;
        ELSIF c = 'overlap' AND spec.name = 'critic.bias' THEN
            b := b - 8;
            e := e - 8;
        END IF;
        hdr := hdr || CASE WHEN hdr = '{' THEN '' ELSE ',' END
               || format('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%s,%s]}',
                         spec.name, dtype, shape_json, b, e);
        IF spec.name = 'actor.bias' THEN
            actor_bias_entry := format('"%s":{"dtype":"F32","shape":[%s],"data_offsets":[%s,%s]}',
                                       spec.name, shape_json, b, e);
        END IF;
        data_hex := data_hex || tensor_hex;
        pos := pos + nbytes;
    END LOOP;
    IF c = 'duplicate' THEN
        hdr := hdr || ',' || actor_bias_entry;
    END IF;
    hdr := hdr || '}';
    IF c = 'not_json' THEN
        hdr := '{"__metadata__": {"format": rl_mlops/1 ]]]';
    END IF;

    -- pad with spaces to a multiple of 8, as the C writer does
    hdr_bytes := convert_to(hdr, 'UTF8');
    hdr_bytes := hdr_bytes || convert_to(repeat(' ', (8 - length(hdr_bytes) % 8) % 8), 'UTF8');

    result := CASE c
                WHEN 'header_len' THEN rl_test.le64(length(hdr_bytes) + pos + 1)
                WHEN 'huge_header' THEN rl_test.le64(18446744073709551615)
                ELSE rl_test.le64(length(hdr_bytes))
              END
              || hdr_bytes || decode(data_hex, 'hex');
    IF c = 'truncated' THEN
        result := substr(result, 1, length(result) - 100);
    ELSIF c = 'truncated_header' THEN
        result := substr(result, 1, 20);
    END IF;
    RETURN result;
END
$$;

-- A price table an agent can be created over.
CREATE TABLE rl_test.bars (symbol text, ts timestamptz, price float8, features float4[]);
INSERT INTO rl_test.bars
SELECT 'AAA', timestamptz '2024-01-01 00:00+00' + i * interval '1 hour', 100 + sin(i / 10.0), ARRAY[i, 0]::float4[]
  FROM generate_series(1, 10) AS i;

-- Counts that must not change when a registry call fails.
CREATE FUNCTION rl_test.snapshot(p_agent text)
RETURNS text
LANGUAGE sql VOLATILE
AS $$
    SELECT format('models=%s active=%s deployments=%s large_objects=%s',
                  (SELECT count(*) FROM rl_mlops.models WHERE agent = p_agent),
                  coalesce((SELECT version FROM rl_mlops.models WHERE agent = p_agent AND state = 'active'), '-'),
                  (SELECT count(*) FROM rl_mlops.deployments WHERE agent = p_agent),
                  (SELECT count(*) FROM pg_largeobject_metadata))
$$;

-- Import, validate and (optionally) deploy a fresh checkpoint; the version.
CREATE FUNCTION rl_test.add_model(p_agent text, p_seed int, p_deploy boolean DEFAULT false,
                                  p_reason text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    a rl_mlops.agents;
    v text;
BEGIN
    SELECT * INTO STRICT a FROM rl_mlops.agents WHERE name = p_agent;
    v := rl_mlops.import_model(p_agent, rl_test.checkpoint(p_seed, a.window_size, a.hidden_size, a.n_features));
    PERFORM rl_mlops.validate_model(p_agent, v);
    IF p_deploy THEN
        PERFORM rl_mlops.deploy_model(p_agent, v, p_reason);
    END IF;
    RETURN v;
END
$$;

-- "SQLSTATE | message | detail" of the error a statement raises, or "no error".
CREATE FUNCTION rl_test.error_of(p_sql text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE p_sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN format('%s | %s | %s', st, msg, det);
END
$$;

-- Run a statement as another role (SET SESSION AUTHORIZATION, so both
-- session_user and current_user are that role) and return "ok: <first
-- column>" or "SQLSTATE: message".  The caller must be a superuser.
CREATE FUNCTION rl_test.as_role(p_role name, p_sql text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE format('SET SESSION AUTHORIZATION %I', p_role);
    EXECUTE p_sql INTO r;
    RESET SESSION AUTHORIZATION;
    RETURN 'ok: ' || coalesce(r, '');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RESET SESSION AUTHORIZATION;
    RETURN st || ': ' || msg;
END
$$;
-- Roles a test runs as may use the helpers (they run with the caller's rights).
GRANT USAGE ON SCHEMA rl_test TO PUBLIC;
GRANT SELECT ON rl_test.bars TO PUBLIC;
