-- Every node keeps what it reads on each request (a user's pages of videos,
-- the tokens it verified) in memory until PostgreSQL says it changed:
-- `NOTIFY vp_changes` at commit with `u:<user id>` when a user's video or
-- notification changes, and `auth` when a token is revoked or a user
-- disabled or deleted. A transaction's identical payloads arrive once.

CREATE FUNCTION vp_notify_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.user_id IS NOT NULL THEN
        PERFORM pg_notify('vp_changes', 'u:' || OLD.user_id);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.user_id IS NOT NULL THEN
        PERFORM pg_notify('vp_changes', 'u:' || NEW.user_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_changed AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION vp_notify_owner();
CREATE TRIGGER notifications_changed AFTER INSERT OR UPDATE OR DELETE ON notifications
    FOR EACH ROW EXECUTE FUNCTION vp_notify_owner();

CREATE FUNCTION vp_notify_auth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vp_changes', 'auth');
    RETURN NULL;
END $$;

CREATE TRIGGER revocations_changed AFTER INSERT ON revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION vp_notify_auth();
CREATE TRIGGER users_disabled AFTER UPDATE OF disabled_at OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION vp_notify_auth();
