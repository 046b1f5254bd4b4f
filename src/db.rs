//! PostgreSQL, the source of truth. Only this module speaks SQL; each query
//! sits next to the function that runs it, named verb-first with its guard.

pub mod account_links;
pub mod changes;
pub mod jobs;
pub mod keys;
pub mod node_name;
pub mod outbox;
pub mod pages;
pub mod schema;
pub mod tls;
pub mod users;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::jobs::InvalidTransition;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Migrations of concurrently starting nodes are serialised on this lock
/// (refinery itself takes none).
const MIGRATION_LOCK: i64 = 0x5650_4d49_4752; // "VPMIGR"

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database query failed: {}", query_detail(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("bad database url: {0}")]
    Config(String),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
}

/// tokio-postgres shows a server error as just "db error"; the log needs
/// the server's message and code.
pub(crate) fn query_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // what went wrong below (a refused connection, a certificate)
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            text
        }
    }
}

impl DbError {
    /// True when the database could not be reached or is going away: no pool
    /// connection, a broken connection (no SQL error code), a connection
    /// exception (class 08), the server shutting down, restarting or
    /// starting (57P01..57P03), or out of resources (class 53: connections,
    /// memory, disk). A client should come back later for all of these.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Query(e) => e.code().is_none_or(|code| {
                let code = code.code();
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
            }),
            DbError::Migration(_)
            | DbError::Config(_)
            | DbError::Tls(_)
            | DbError::Transition(_) => false,
        }
    }

    /// True when the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Query(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The connection settings of `url` and its TLS; connecting gives up after
/// 2 s unless the url says otherwise.
pub(crate) fn target(url: &str) -> DbResult<tls::Target> {
    let mut target = tls::Target::parse(url)?;
    if target.config.get_connect_timeout().is_none() {
        target
            .config
            .connect_timeout(std::time::Duration::from_secs(2));
    }
    Ok(target)
}

/// Connections a serving node keeps open at most: requests, the queue's
/// housekeeping and the notifier share a fixed part; each worker adds what
/// its job holds at once (its writes, and its lease renewal beside them).
/// With the default 2 workers, 36; PostgreSQL's `max_connections` must
/// cover this times the node count, plus the migration job's.
pub fn serving_pool_size(workers: usize) -> usize {
    const SHARED: usize = 32;
    const PER_WORKER: usize = 2;
    SHARED + workers * PER_WORKER
}

/// Connections a one-off command (`migrate`, `user add`, `jobs`) needs.
pub const COMMAND_POOL_SIZE: usize = 2;

/// A connection pool for `url`.
pub fn connect(url: &str, max_size: usize) -> DbResult<Pool> {
    let target = target(url)?;
    let manager = Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        // While the database is down, opening a connection fails within
        // seconds and the request answers 503. Waiting for a free connection
        // under a burst may take longer: that is queueing, not an outage.
        .wait_timeout(Some(std::time::Duration::from_secs(15)))
        .create_timeout(Some(std::time::Duration::from_secs(2)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// Applies pending migrations; safe when several nodes start at once.
pub async fn migrate(pool: &Pool) -> DbResult<usize> {
    let mut conn = pool.get().await?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    let report = embedded::migrations::runner().run_async(client).await;
    conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(report?.applied_migrations().len())
}

/// Readiness: can we run a query now? On a connection of its own
/// (`probe`, opened when missing or broken), so a pool that every request
/// holds busy does not make the answer wait.
pub async fn ping(url: &str, probe: &mut Option<tokio_postgres::Client>) -> DbResult<()> {
    if probe.as_ref().is_none_or(|c| c.is_closed()) {
        let mut target = target(url)?;
        target.config.application_name("videoproject readiness");
        *probe = Some(target.connect().await?);
    }
    if let Some(client) = probe {
        client.simple_query("SELECT 1").await?;
    }
    Ok(())
}

/// Creates the database named in `url` when it does not exist, so that a
/// fresh machine needs no manual `createdb`.
pub async fn create_database_if_missing(url: &str) -> DbResult<bool> {
    let mut admin = target(url)?;
    let Some(name) = admin.config.get_dbname().map(str::to_owned) else {
        return Ok(false);
    };
    admin.config.dbname("postgres");
    let client = admin.connect().await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    let mut created = false;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match client.batch_execute(&sql).await {
            Ok(()) => created = true,
            // another node created it in the meantime
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// A fresh, migrated database on the machine's PostgreSQL for the unit
/// tests of the queries (`VP_TEST_DATABASE_URL` names the server's admin
/// connection), dropped when the returned guard is: the black-box tests'
/// own (test-support/).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub struct Fresh {
        pub pool: Pool,
        _database: videoproject_test_support::TestDb,
    }

    pub async fn database() -> Fresh {
        let database = videoproject_test_support::TestDb::create().await;
        let pool = connect(&database.url, 16).unwrap();
        migrate(&pool).await.unwrap();
        Fresh {
            pool,
            _database: database,
        }
    }
}
