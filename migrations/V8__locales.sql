-- Languages: each account's, and emails composed as data, rendered in it.

-- The language of the account's emails and page; set at sign-up from the
-- request or the browser's Accept-Language, changed with PATCH /me.
ALTER TABLE users ADD COLUMN locale text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'pt-BR'));

-- An email row's facts (notify::message::EmailContent as JSON), rendered
-- into the recipient's language when it is sent, and the image shown
-- inline in it (a done video's contact sheet), dropped once sent.
-- `subject` and `body` keep an English plain-text rendering: what a node of
-- the previous version sends while a rolling deploy runs.
ALTER TABLE notifications ADD COLUMN content jsonb, ADD COLUMN inline_image bytea;
