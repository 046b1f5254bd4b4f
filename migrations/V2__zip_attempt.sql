-- Each attempt writes its own zip (videos/{id}/frames-{attempt}.zip); the
-- completion that wins the lease fence records which one is the result, so a
-- fenced-out attempt can never replace it. Expand-only: nodes of the
-- previous release ignore the column.
ALTER TABLE jobs ADD COLUMN zip_attempt integer;
