//! Wiring a node together: database, media store, token keys, actors and
//! the HTTP server. [`run`] takes its listener and shutdown signal, so tests
//! and `main` start it the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, call_t};
use tokio::net::TcpListener;

use crate::auth::{SessionTokens, SignInLimits, TokenKey};
use crate::cluster::ClusterArgs;
use crate::http::{self, AppState};
use crate::notify::{Mailer, NotifierArgs, WebhookSender};
use crate::processor::ProcessorContext;
use crate::settings::{Migrations, Settings};
use crate::storage::MediaStore;
use crate::supervisor::{Actors, Supervisor, SupervisorArgs, SupervisorMsg};
use crate::upload::{UploadArgs, UploadLimits, Uploads};
use crate::{db, telemetry};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// How often a node waiting for the migration job looks at the schema.
const SCHEMA_POLL: Duration = Duration::from_secs(2);

/// Connects and brings the schema to this binary's version: applies the
/// migrations (creating the database on a fresh machine), or waits for
/// the migration job to apply them.
pub async fn prepare_database(
    settings: &Settings,
    pool_size: usize,
    migrations: Migrations,
) -> anyhow::Result<deadpool_postgres::Pool> {
    let url = settings.database_url.expose();
    if migrations == Migrations::Apply
        && db::create_database_if_missing(url)
            .await
            .context("connecting to PostgreSQL")?
    {
        tracing::info!("created the database");
    }
    let pool = db::connect(url, pool_size)?;
    match migrations {
        Migrations::Apply => {
            let applied = db::migrate(&pool).await.context("applying migrations")?;
            if applied > 0 {
                tracing::info!(applied, "migrations applied");
            }
        }
        Migrations::Await => await_schema(&pool).await,
    }
    Ok(pool)
}

/// Waits until the schema is at this binary's version (the migration job
/// runs before the nodes; a failed job leaves them waiting, not crashing).
async fn await_schema(pool: &deadpool_postgres::Pool) {
    let mut said = None;
    loop {
        match db::schema::behind(pool).await {
            Ok(None) => return,
            Ok(Some(behind)) if said != Some(behind) => {
                tracing::warn!(
                    at = behind.at,
                    needs = behind.needs,
                    "waiting for the migration job: the schema is older than this binary"
                );
                said = Some(behind);
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(error = %e, "waiting for the database"),
        }
        tokio::time::sleep(SCHEMA_POLL).await;
    }
}

/// `videoproject migrate`: applies the migrations, then gives the nodes'
/// and the autoscaler's roles (when their urls are set) their access.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = prepare_database(settings, db::COMMAND_POOL_SIZE, Migrations::Apply).await?;
    let roles = [
        (&settings.app_database_url, db::schema::Access::Rows),
        (
            &settings.monitor_database_url,
            db::schema::Access::JobStates,
        ),
    ];
    for (url, access) in roles {
        if let Some(url) = url {
            let role = db::schema::grant(&pool, url.expose(), access)
                .await
                .with_context(|| format!("granting {access:?} access"))?;
            tracing::info!(%role, ?access, "role granted its access");
        }
    }
    Ok(())
}

/// Writes `addr` and a newline to `path` whole: written beside it, then
/// renamed, so a reader never sees half of it.
fn write_addr_file(path: &std::path::Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{addr}\n"))?;
    std::fs::rename(&partial, path)
}

pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    settings.check_production()?;
    let settings = Arc::new(settings);
    let node = settings.node_name();
    let workers = settings.workers();
    // a long migration, or a wait for the migration job, under probes that
    // must see the process alive
    let addr = listener.local_addr()?;
    if let Some(path) = &settings.addr_file {
        write_addr_file(path, addr)
            .with_context(|| format!("writing the address to {}", path.display()))?;
    }
    tracing::info!(%addr, %node, "answering probes; preparing the database");
    let pool = http::starting::answer_while(
        &listener,
        &node,
        prepare_database(
            &settings,
            db::serving_pool_size(workers),
            settings.migrations,
        ),
    )
    .await?;
    let changes = db::changes::listen(settings.database_url.expose())?;

    crate::auth::prepare_passwords();
    let keys = TokenKey::load(
        settings.token_key.as_ref().map(|s| s.expose()),
        settings.token_key_file.as_deref(),
        &pool,
    )
    .await
    .context("loading the token key")?;
    let sessions = Arc::new(SessionTokens::new(
        &keys,
        Duration::from_secs(settings.tuning.token_ttl_secs),
        Duration::from_secs(settings.tuning.download_link_secs),
        pool.clone(),
        changes.clone(),
    ));

    // the name owns this node's uploads and jobs: one live node per name,
    // taken before anything is cleaned up in its name
    let name = db::node_name::claim(settings.database_url.expose(), &node).await?;
    let store = MediaStore::from_url(&settings.media_url)?;
    clean_up_after_crash(&pool, &store, &node).await?;
    let mailer = Mailer::new(
        settings.smtp_url.as_ref().map(|s| s.expose()),
        &settings.mail_from,
    )?;
    let metrics = telemetry::metrics();

    // A node joins a cluster when it has a cookie; without one it runs alone.
    let cluster = match &settings.cluster_cookie {
        Some(cookie) => {
            Some(ClusterArgs::new(&node, &settings, cookie.clone(), pool.clone()).await?)
        }
        None => None,
    };
    let cluster_view = cluster.as_ref().map(|c| c.view.clone());

    let tuning = &settings.tuning;
    crate::media::set_memory_limit(tuning.media_memory_bytes);
    // the actors' handles, filled in as the supervisor starts them
    let actors = Actors::default();
    let supervisor_args = SupervisorArgs {
        actors: actors.clone(),
        upload: UploadArgs {
            pool: pool.clone(),
            node: node.clone(),
            max_concurrent: tuning.max_concurrent_uploads,
            max_per_user: tuning.max_uploads_per_user,
        },
        processor: Arc::new(ProcessorContext {
            pool: pool.clone(),
            store: store.clone(),
            node: node.clone(),
            workers,
            lease: Duration::from_secs(tuning.job_lease_secs),
            queue_poll: Duration::from_secs(tuning.queue_poll_secs),
            ffmpeg: tuning.ffmpeg_path.clone(),
            ffprobe: tuning.ffprobe_path.clone(),
            stall_timeout: Duration::from_secs(tuning.ffmpeg_stall_secs),
            probe_timeout: Duration::from_secs(tuning.probe_timeout_secs),
            job_timeout: Duration::from_secs(tuning.job_timeout_secs),
            budget: crate::media::Budget::of(tuning),
            shutdown_grace: Duration::from_secs(tuning.shutdown_grace_secs),
            per_user_cap: i64::from(tuning.max_processing_per_user),
            retention: Duration::from_secs(u64::from(settings.retention_days) * 86_400),
            cores: crate::media::CoreShare::of_this_machine(tuning.shared_cores_dir())
                .context("opening shared_cores_dir")?,
            changes: changes.clone(),
            notifier: actors.notifier.clone(),
        }),
        notifier: NotifierArgs {
            pool: pool.clone(),
            mailer,
            webhooks: WebhookSender::new(tuning.webhook_private_networks)?,
            max_attempts: tuning.mail_max_attempts,
            unverified_per_day: tuning.unverified_emails_per_day(),
            public_url: settings.public_url(listener.local_addr()?),
        },
        cluster,
    };
    let (supervisor, mut supervisor_done) = Actor::spawn(None, Supervisor, supervisor_args)
        .await
        .context("starting actors")?;

    let rendered = http::Rendered::new(sessions.link_reuse());
    let feeds = http::Feeds::new(
        pool.clone(),
        changes.clone(),
        sessions.clone(),
        settings.tuning.max_streams_per_user,
    );
    let streams = feeds.clone();
    let uploads = Uploads::new(
        pool.clone(),
        store.clone(),
        changes.clone(),
        node.clone(),
        UploadLimits::of(&settings),
        actors.upload.clone(),
    );
    let state = Arc::new(AppState {
        pool,
        store,
        authenticator: sessions.clone(),
        sessions,
        limiter: SignInLimits::new(Duration::from_secs(300)),
        links: settings.link_policy(listener.local_addr()?),
        actors: actors.clone(),
        settings: settings.clone(),
        node: node.clone(),
        metrics,
        pages: db::pages::Pages::new(changes.clone()),
        rendered,
        feeds,
        changes,
        cluster: cluster_view,
        uploads,
    });
    tracing::info!(%addr, %node, workers, "http listening");

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = http::serve(listener, state, async move {
        let _ = http_stopped.await;
    });
    tokio::pin!(server);
    let actors_failed = tokio::select! {
        () = &mut server => false,
        () = shutdown => false,
        // the supervisor gave up restarting a child: this node is no use
        // any more, stop so that the orchestrator restarts it
        _ = &mut supervisor_done => true,
        // another process runs under this node's name now
        () = name.lost.cancelled() => true,
    };
    tracing::info!("shutting down: no more claims, draining HTTP");
    actors.pool.drain();
    let _ = stop_http.send(());
    // live event streams never end by themselves: end them, so the drain
    // waits for requests only (their clients reconnect to another node)
    streams.close_all();
    let _ = tokio::time::timeout(DRAIN, &mut server).await;
    if name.lost.is_cancelled() {
        anyhow::bail!("another node took this node's name `{node}`");
    }
    if actors_failed {
        anyhow::bail!("the actor supervisor stopped");
    }
    tracing::info!("stopping actors");
    let patience = settings.tuning.shutdown_grace_secs.saturating_add(120) * 1000;
    let _ = call_t!(supervisor, SupervisorMsg::Shutdown, patience);
    let _ = supervisor_done.await;
    tracing::info!("stopped");
    Ok(())
}

/// Removes what a crash can leave behind: staging files of unfinished
/// writes, and uploads this node was streaming when it died.
async fn clean_up_after_crash(
    pool: &deadpool_postgres::Pool,
    store: &MediaStore,
    node: &str,
) -> anyhow::Result<()> {
    let files = store
        .sweep_staging_files()
        .context("sweeping staging files")?
        + store.sweep_spool().context("sweeping the spool")?;
    let uploads = crate::upload::remove_abandoned(pool, store, Some(node)).await?;
    if files + uploads > 0 {
        tracing::info!(staging_files = files, uploads, "removed unfinished uploads");
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
