use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio_postgres::NoTls;

use crate::free_port;
use crate::tls::Issued;

/// Admin connection used to create and drop test databases.
pub(crate) fn admin_url() -> String {
    std::env::var("VP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub(crate) fn with_dbname(url: &str, name: &str) -> String {
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{name}")
}

/// A fresh database, dropped when the test ends: on the machine's
/// PostgreSQL, or on a server of the test's own that it may stop and start.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
    server: Option<TempPostgres>,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_on(admin_url(), None).await
    }

    /// A database on a PostgreSQL of its own ([`TestDb::server`]).
    pub async fn private() -> Self {
        let server = TempPostgres::start();
        Self::create_on(server.admin_url(), Some(server)).await
    }

    async fn create_on(admin: String, server: Option<TempPostgres>) -> Self {
        let name = format!("vp_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .expect("PostgreSQL must be running (see README: scripts/test)");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_dbname(&admin, &name);
        Self {
            name,
            url,
            admin,
            server,
        }
    }

    /// The connection this database was made on (to the server's own
    /// database), for what outlives the test database.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }

    /// The server of a [`TestDb::private`] database.
    pub fn server(&self) -> &TempPostgres {
        self.server.as_ref().expect("a private database")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.server.is_some() {
            // the whole server goes
            return;
        }
        run_as_admin(
            &self.admin,
            vec![format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )],
        );
    }
}

/// Runs `statements` as `admin`, best effort (clean-up), on a runtime of
/// its own: `Drop` may run outside one.
pub fn run_as_admin(admin: &str, statements: Vec<String>) {
    let admin = admin.to_owned();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                tokio::spawn(conn);
                for statement in statements {
                    let _ = client.batch_execute(&statement).await;
                }
            }
        });
    })
    .join();
}

/// One line of a job's history (`job_events`).
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// Shown when an assertion about the history fails.
    pub from: String,
    pub to: String,
    pub node: String,
    pub detail: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: f64,
}

/// A job's history, oldest first.
pub async fn job_events(db: &TestDb, id: &str) -> Vec<JobEvent> {
    db.client()
        .await
        .query(
            "SELECT coalesce(from_state::text, ''), to_state::text, node, detail, extract(epoch FROM at)::float8
             FROM job_events WHERE job_id = $1::text::uuid ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| JobEvent {
            from: r.get(0),
            to: r.get(1),
            node: r.get(2),
            detail: r.get(3),
            at: r.get(4),
        })
        .collect()
}

/// A PostgreSQL server of the test's own, on a free port, that the test can
/// stop and start (the machine's server must stay up for the others).
pub struct TempPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl TempPostgres {
    fn bin(tool: &str) -> PathBuf {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .flatten()
            .map(|e| e.path())
            .collect();
        versions.sort();
        versions
            .last()
            .expect("a PostgreSQL version")
            .join("bin")
            .join(tool)
    }

    /// Runs a PostgreSQL tool as the `postgres` user (initdb refuses root).
    fn run_as_postgres(args: &str) {
        let status = Command::new("su")
            .args(["postgres", "-c", args])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args}");
    }

    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server that takes connections over TLS only, with `issued`'s
    /// certificate: `pg_hba.conf` has `hostssl` and nothing else for TCP.
    pub fn start_tls_only(issued: &Issued) -> Self {
        Self::start_with(|dir| {
            let data = dir.join("data");
            for (from, to) in [(&issued.cert, "server.crt"), (&issued.key, "server.key")] {
                std::fs::copy(from, data.join(to)).unwrap();
            }
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "chown postgres {d}/server.crt {d}/server.key && chmod 600 {d}/server.key",
                    d = data.display()
                ))
                .status()
                .unwrap();
            assert!(status.success());
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .unwrap();
            std::io::Write::write_all(
                &mut conf,
                b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .unwrap();
        })
    }

    /// Made with `initdb`, then `configure`d with its folder, then started.
    fn start_with(configure: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vp-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let initdb = Self::bin("initdb");
        Self::run_as_postgres(&format!(
            "{} -D {}/data -A trust -U postgres --no-sync",
            initdb.display(),
            dir.path().display()
        ));
        configure(dir.path());
        let pg = Self {
            dir,
            port: free_port(),
        };
        pg.resume();
        pg
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&self) {
        let d = self.dir.path().display();
        Self::run_as_postgres(&format!(
            "{} -D {d}/data -l {d}/log -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1' start",
            Self::bin("pg_ctl").display(),
            self.port
        ));
    }

    /// A fast shutdown: connections are cut.
    pub fn stop(&self) {
        let d = self.dir.path().display();
        Self::run_as_postgres(&format!(
            "{} -D {d}/data -m fast -w stop",
            Self::bin("pg_ctl").display()
        ));
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        let _ = Command::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "{} -D {d}/data -m immediate -w stop",
                    Self::bin("pg_ctl").display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
