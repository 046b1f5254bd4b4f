//! The schema's version against this binary's, and the login roles that use
//! the schema without owning it: the nodes' (rows, no DDL) and the
//! autoscaler's (the jobs' states, nothing else).

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;

use super::{DbError, DbResult};

/// The newest migration this binary carries.
pub fn latest() -> i32 {
    super::embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The schema is older than this binary: at `at`, it needs `needs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    pub at: i32,
    pub needs: i32,
}

/// Whether the schema lacks migrations this binary needs (a newer schema
/// is fine: a release's migrations keep the previous release working).
pub async fn behind(pool: &Pool) -> DbResult<Option<Behind>> {
    let conn = pool.get().await?;
    let at: i32 = match conn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => return Err(e.into()),
    };
    let needs = latest();
    Ok((at < needs).then_some(Behind { at, needs }))
}

/// What a role may do with the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The nodes: read and write rows of every table, change no table.
    Rows,
    /// The autoscaler: count jobs by state; no other column, no other table.
    JobStates,
}

impl Access {
    /// The grants, a `format()` string: `%1$I` the role, `%2$I` the database.
    fn grants(self) -> &'static str {
        match self {
            Access::Rows => {
                "GRANT CONNECT ON DATABASE %2$I TO %1$I;
                 GRANT USAGE ON SCHEMA public TO %1$I;
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %1$I;
                 GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %1$I;
                 REVOKE INSERT, UPDATE, DELETE ON refinery_schema_history FROM %1$I;"
            }
            Access::JobStates => {
                "GRANT CONNECT ON DATABASE %2$I TO %1$I;
                 GRANT USAGE ON SCHEMA public TO %1$I;
                 GRANT SELECT (state) ON jobs TO %1$I;"
            }
        }
    }
}

/// Makes the user of `url` a login role with its password (created, or its
/// password set) and `access` to the current tables. `migrate` runs it after
/// the migrations, as the schema's owner, so that tables a release adds are
/// covered. The role may not be the one migrating, nor a superuser.
pub async fn grant(pool: &Pool, url: &str, access: Access) -> DbResult<String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| DbError::Config(format!("a role's database url: {e}")))?;
    let (Some(user), Some(password)) = (config.get_user(), config.get_password()) else {
        return Err(DbError::Config(
            "a role's database url needs a user and a password".into(),
        ));
    };
    let password = std::str::from_utf8(password)
        .map_err(|_| DbError::Config("a role's password must be UTF-8".into()))?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let row = tx
        .query_one(
            "SELECT current_user, r.rolsuper FROM (SELECT 1) one
             LEFT JOIN pg_roles r ON r.rolname = $1",
            &[&user],
        )
        .await?;
    let (current, superuser): (String, Option<bool>) = (row.get(0), row.get(1));
    if current == user || superuser == Some(true) {
        return Err(DbError::Config(format!(
            "the role `{user}` must not be the migrating role or a superuser"
        )));
    }
    let verb = if superuser.is_some() {
        "ALTER"
    } else {
        "CREATE"
    };
    // format() quotes the name and the password on the server
    let statement: String = tx
        .query_one(
            "SELECT format('%s ROLE %I LOGIN PASSWORD %L', $1::text, $2::text, $3::text)
                 || ';' || format($4::text, $2::text, current_database())",
            &[&verb, &user, &password, &access.grants()],
        )
        .await?
        .get(0);
    tx.batch_execute(&statement).await?;
    tx.commit().await?;
    Ok(user.to_owned())
}
