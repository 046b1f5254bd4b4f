-- A running job's owner renews its lease and records its progress every few
-- hundred milliseconds. Each renewal fired `jobs_changed`, so every node
-- dropped the owner's kept pages and woke their live streams for a change no
-- reader can see. Now an update notifies only when something a reader sees
-- changed: any column but the lease, the change time and the progress, or
-- the progress by a step of 5 %.

DROP TRIGGER jobs_changed ON jobs;

CREATE TRIGGER jobs_changed AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION vp_notify_owner();

CREATE TRIGGER jobs_changed_visibly AFTER UPDATE ON jobs
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - '{progress,lease_until,updated_at}'::text[])
              IS DISTINCT FROM (to_jsonb(NEW) - '{progress,lease_until,updated_at}'::text[])
          OR floor(OLD.progress * 20) IS DISTINCT FROM floor(NEW.progress * 20))
    EXECUTE FUNCTION vp_notify_owner();
