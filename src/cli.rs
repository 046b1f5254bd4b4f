//! The command line: `videoproject serve | migrate | user add|disable|enable EMAIL | jobs | version`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "videoproject",
    about = "Upload a video, get a zip of its frames.",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: applies pending migrations, then serves HTTP.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List jobs of every user, newest first, or show one.
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
        /// Only jobs in this state (uploading, queued, processing, done, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// How many jobs to list.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Print the version.
    Version,
    /// Print the environment variables the node reads, one per line (a
    /// trailing `*` stands for a family, e.g. `AWS_*`); deployment checks
    /// hold the manifests to this list.
    Env,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// One job with every transition it went through.
    Show {
        id: String,
        /// Then print its state and progress as they change, until it ends.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from VP_USER_PASSWORD, else from standard input.
    Add { email: String },
    /// Disable a user: no sign-in, and its tokens are refused on every node.
    Disable { email: String },
    /// Enable a disabled user again.
    Enable { email: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operating_contract() {
        assert!(matches!(
            Cli::try_parse_from(["videoproject", "serve"])
                .unwrap()
                .command,
            Command::Serve
        ));
        assert!(matches!(
            Cli::try_parse_from(["videoproject", "migrate"])
                .unwrap()
                .command,
            Command::Migrate
        ));
        assert!(matches!(
            Cli::try_parse_from(["videoproject", "env"])
                .unwrap()
                .command,
            Command::Env
        ));
        assert!(matches!(
            Cli::try_parse_from(["videoproject", "version"])
                .unwrap()
                .command,
            Command::Version
        ));
        match Cli::try_parse_from(["videoproject", "user", "add", "a@b.co"])
            .unwrap()
            .command
        {
            Command::User {
                command: UserCommand::Add { email },
            } => assert_eq!(email, "a@b.co"),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["videoproject", "user", "add"]).is_err());
        match Cli::try_parse_from(["videoproject", "jobs", "--state", "failed"])
            .unwrap()
            .command
        {
            Command::Jobs {
                command: None,
                state,
                limit,
            } => assert_eq!((state.as_deref(), limit), (Some("failed"), 20)),
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["videoproject", "jobs", "show", "X", "--follow"])
            .unwrap()
            .command
        {
            Command::Jobs {
                command: Some(JobsCommand::Show { id, follow }),
                ..
            } => assert_eq!((id.as_str(), follow), ("X", true)),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["videoproject", "dance"]).is_err());
    }
}
