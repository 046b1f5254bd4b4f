//! One live node per name. A node's name owns its uploads and jobs: at
//! start a node removes the uploads "it" was streaming and requeues the jobs
//! "it" held, so two processes with one name would undo each other's work.
//! A node holds a PostgreSQL advisory lock on its name for its whole life,
//! on a connection of its own; a second one is refused at start. If the
//! lock's connection is lost and the name was taken meanwhile, the node is
//! told to stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DbError, DbResult};

/// The advisory lock's first key: names are hashed into the second.
const NAMESPACE: i32 = 0x5650_4e4d; // "VPNM"
/// How often the lock's connection is asked whether it still answers.
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait between attempts to take the lock again after its connection went.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long the lock may be found taken before this node gives up its
/// name: the server may still be holding it for the connection just lost.
const TAKEN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(
        "another node named `{0}` is running against this database; give each node its own VP_NODE_NAME"
    )]
    Taken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The name, held; cancelled `lost` means another node has it now.
pub struct NameLock {
    pub lost: CancellationToken,
    held: CancellationToken,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // the connection closes, and the lock with it
        self.held.cancel();
    }
}

/// Takes `name` for this node, or says who has it.
pub async fn claim(url: &str, name: &str) -> Result<NameLock, NameError> {
    let mut target = super::target(url)?;
    target.config.application_name("videoproject node name");
    let client = lock(&target, name)
        .await?
        .ok_or_else(|| NameError::Taken(name.to_owned()))?;
    let lost = CancellationToken::new();
    let held = CancellationToken::new();
    let (name, keep_lost, keep_held) = (name.to_owned(), lost.clone(), held.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = hold(target, &name, client, &keep_lost) => {}
            () = keep_held.cancelled() => {}
        }
    });
    Ok(NameLock { lost, held })
}

/// A connection holding the lock on `name`; None when another has it.
async fn lock(target: &super::tls::Target, name: &str) -> DbResult<Option<tokio_postgres::Client>> {
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&NAMESPACE, &name],
        )
        .await?;
    Ok(row.get::<_, bool>(0).then_some(client))
}

/// Keeps the lock while its connection answers; takes it again when the
/// connection comes back, or cancels `lost` if another node took it.
async fn hold(
    target: super::tls::Target,
    name: &str,
    mut client: tokio_postgres::Client,
    lost: &CancellationToken,
) {
    loop {
        let alive = tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await;
        if matches!(alive, Ok(Ok(_))) {
            tokio::time::sleep(PING_EVERY).await;
            continue;
        }
        tracing::warn!("lost the connection holding this node's name; taking it again");
        let mut taken_since = None;
        client = loop {
            tokio::time::sleep(RETRY_AFTER).await;
            match lock(&target, name).await {
                Ok(Some(client)) => break client,
                Ok(None) => {
                    let since = *taken_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= TAKEN_FOR {
                        tracing::error!(
                            node = name,
                            "another node took this node's name while its database connection was down; stopping"
                        );
                        lost.cancel();
                        return;
                    }
                }
                Err(_) => continue,
            }
        };
    }
}
