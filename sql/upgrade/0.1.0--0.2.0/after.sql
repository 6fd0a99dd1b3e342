
--------------------------------------------------------------------------
-- rl_mlops 0.1.0 -> 0.2.0, second half: what 0.2.0 no longer has, removed
-- once the install script has replaced everything that used it.
--------------------------------------------------------------------------

-- retrain() lost its "trigger" argument (only retrain_if_due() records
-- 'schedule'): the roles that could call the old one can call the new one.
DO $$
DECLARE
    old_retrain regprocedure := 'rl_mlops.retrain(text, boolean, integer, boolean, text)';
    grantee regrole;
BEGIN
    FOR grantee IN
        SELECT a.grantee::regrole
          FROM pg_catalog.pg_proc p,
               LATERAL pg_catalog.aclexplode(p.proacl) a
         WHERE p.oid = old_retrain AND a.privilege_type = 'EXECUTE'
           AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION rl_mlops.retrain(text, boolean, integer, boolean) TO %s',
                                  grantee);
    END LOOP;
    EXECUTE pg_catalog.format('DROP FUNCTION %s', old_retrain);
END
$$;

-- Workers are no longer tracked by advisory lock; cron_job() replaces
-- _cron_job() (it also reports the job's last run).
DROP FUNCTION rl_mlops._run_lock_held(text);
DROP FUNCTION rl_mlops._cron_job(text);

-- models_agent_newest (agent, created_at, version) replaces it.
DROP INDEX rl_mlops.models_agent_created;
