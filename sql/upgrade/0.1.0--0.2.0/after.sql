
--------------------------------------------------------------------------
-- rl_mlops 0.1.0 -> 0.2.0, second half: what 0.2.0 no longer has, removed
-- once the install script has replaced everything that used it.
--------------------------------------------------------------------------

-- retrain() lost its "trigger" argument (only retrain_if_due() records
-- 'schedule'), configure() gained the monitoring settings, import_model()
-- gained sigma (plain PyTorch files), export_model() optimizer and
-- create_agent() returns jsonb (renamed by before.sql): the
-- roles that could call the old signatures can call the new ones.
DO $$
DECLARE
    renamed text[][] := ARRAY[
        ARRAY['rl_mlops.retrain(text, boolean, integer, boolean, text)',
              'rl_mlops.retrain(text, boolean, integer, boolean)'],
        ARRAY['rl_mlops.configure(text, integer, integer, interval, double precision, integer,'
              ' double precision, double precision, double precision, double precision,'
              ' double precision, integer, integer, double precision, double precision,'
              ' double precision, bigint, integer, integer, integer, boolean, integer,'
              ' text, double precision)',
              'rl_mlops.configure(text, integer, integer, interval, double precision, integer,'
              ' double precision, double precision, double precision, double precision,'
              ' double precision, integer, integer, double precision, double precision,'
              ' double precision, bigint, integer, integer, integer, boolean, integer,'
              ' text, double precision, integer, boolean, double precision, integer,'
              ' double precision, interval, interval, integer, boolean, boolean, text, double precision)'],
        ARRAY['rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text)',
              'rl_mlops.import_model(text, bytea, integer, double precision, jsonb, text, double precision)'],
        ARRAY['rl_mlops.export_model(text, text)',
              'rl_mlops.export_model(text, text, boolean)'],
        ARRAY['rl_mlops._create_agent_0_1_0(text, regclass, name, name, name, name, integer, integer, integer)',
              'rl_mlops.create_agent(text, regclass, name, name, name, name, integer, integer, integer)']];
    grantee regrole;
BEGIN
    FOR i IN 1 .. pg_catalog.array_length(renamed, 1) LOOP
        FOR grantee IN
            SELECT a.grantee::regrole
              FROM pg_catalog.pg_proc p,
                   LATERAL pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = renamed[i][1]::regprocedure AND a.privilege_type = 'EXECUTE'
               AND a.grantee <> 0 AND a.grantee <> p.proowner
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', renamed[i][2], grantee);
        END LOOP;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', renamed[i][1]);
    END LOOP;
END
$$;

-- The checkpoint functions take the registry's sigma (for plain PyTorch
-- files) and report the file's format.
DROP FUNCTION rl_mlops._store_checkpoint(bytea, integer, integer, integer);
DROP FUNCTION rl_mlops._validate_checkpoint(oid, text, integer, integer, integer);

-- Workers are no longer tracked by advisory lock; cron_job() replaces
-- _cron_job() (it also reports the job's last run).
DROP FUNCTION rl_mlops._run_lock_held(text);
DROP FUNCTION rl_mlops._cron_job(text);

-- models_agent_newest (agent, created_at, version) replaces it.
DROP INDEX rl_mlops.models_agent_created;
