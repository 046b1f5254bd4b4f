//! The `videoproject` binary: parse the command line, load settings, start
//! logging, hand over to the library.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Parser;
use videoproject::cli::{Cli, Command, JobsCommand, UserCommand};
use videoproject::settings::Settings;
use videoproject::{admin, app, db, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    // several crates bring their own rustls provider; pick one before any TLS
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("videoproject {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Env => {
            for name in Settings::environment_names() {
                println!("{name}");
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("videoproject: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(settings.log_format);
    match execute(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("videoproject: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(settings.http_addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.http_addr))?;
            app::run(settings, listener, app::shutdown_signal()).await
        }
        Command::Migrate => {
            app::migrate(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { email },
        } => {
            let password = match std::env::var("VP_USER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprint!("password for {email}: ");
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let pool = app::prepare_database(&settings, db::COMMAND_POOL_SIZE, settings.migrations)
                .await?;
            let user = videoproject::accounts::register(
                &pool,
                &email,
                &password,
                Default::default(),
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}",
                serde_json::json!({ "id": user.id, "email": user.email.as_str() })
            );
            Ok(())
        }
        Command::User {
            command: UserCommand::Disable { email },
        } => set_disabled(&settings, &email, true).await,
        Command::User {
            command: UserCommand::Enable { email },
        } => set_disabled(&settings, &email, false).await,
        Command::Jobs {
            command,
            state,
            limit,
        } => {
            let pool = app::prepare_database(&settings, db::COMMAND_POOL_SIZE, settings.migrations)
                .await?;
            match command {
                None => {
                    let state = state.as_deref().map(admin::parse_state).transpose()?;
                    print!(
                        "{}",
                        admin::list(&pool, state, limit.clamp(1, 10_000)).await?
                    );
                }
                Some(JobsCommand::Show { id, follow }) => {
                    print!("{}", admin::show(&pool, &id).await?);
                    if follow {
                        admin::follow(&pool, &id, |line| println!("{line}")).await?;
                    }
                }
            }
            Ok(())
        }
        Command::Version | Command::Env => unreachable!("handled before settings load"),
    }
}

/// `user disable` and `user enable`.
async fn set_disabled(settings: &Settings, email: &str, disabled: bool) -> anyhow::Result<()> {
    let pool = app::prepare_database(settings, db::COMMAND_POOL_SIZE, settings.migrations).await?;
    admin::set_disabled(&pool, email, disabled).await?;
    if disabled {
        println!("{email} is disabled: no sign-in, its tokens are refused");
    } else {
        println!("{email} is enabled");
    }
    Ok(())
}
