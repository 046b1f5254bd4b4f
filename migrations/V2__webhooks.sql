-- A second notification channel: signed webhook POSTs from the same outbox.

-- The key a user's webhook deliveries are signed with (HMAC-SHA256); set
-- with the webhook URL, shown to its owner, rotated on request.
ALTER TABLE users ADD COLUMN webhook_secret text;

-- For a webhook row, `recipient` is the URL it goes to, `subject` the event
-- type and `body` the JSON payload.
ALTER TABLE notifications
    ADD COLUMN channel text NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'webhook'));
