//! The command line: `videoproject serve | migrate | user add EMAIL | version`.

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
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from VP_USER_PASSWORD, else from standard input.
    Add { email: String },
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
        assert!(Cli::try_parse_from(["videoproject", "dance"]).is_err());
    }
}
