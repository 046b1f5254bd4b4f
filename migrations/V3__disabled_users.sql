-- An operator can disable an account (`videoproject user disable EMAIL`): it
-- cannot sign in, and its tokens are refused on every node.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
