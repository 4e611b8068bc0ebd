//! `platform token [--user U] [--password P] [--client-credentials]`: an access token from the
//! stack's identity provider, printed alone on stdout so `TOKEN=$(platform token)` works for
//! curl; `--json` prints the provider's whole answer. The token's issuer is checked against the
//! one the services validate (see [`crate::observe::auth`]).

use clap::Args;

use super::Global;
use crate::observe::Observer;
use crate::observe::auth::{self, Grant};
use crate::runtime::Runtime;
use crate::stack::StackFile;
use crate::{Result, output};

/// `platform token` arguments.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user for a password grant through the `platform-cli` client [default: $PLATFORM_USER,
    /// else admin].
    #[arg(short, long)]
    pub user: Option<String>,
    /// The user's password [default: $PLATFORM_PASSWORD, else the user name (as in the dev
    /// realm: admin/admin, alice/alice)].
    #[arg(short, long)]
    pub password: Option<String>,
    /// A client-credentials token of a confidential client (the `platform-service` service
    /// account, which has the admin role) instead of a user's.
    #[arg(long, conflicts_with_all = ["user", "password"])]
    pub client_credentials: bool,
    /// The client: `platform-cli` for users, `platform-service` for --client-credentials.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The confidential client's secret [default: the dev realm's].
    #[arg(long, env = "PLATFORM_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
}

impl TokenArgs {
    /// The grant the arguments ask for.
    pub fn grant(&self) -> Grant {
        if self.client_credentials {
            return Grant::ClientCredentials {
                client_id: self
                    .client_id
                    .clone()
                    .unwrap_or_else(|| auth::env_or("PLATFORM_CLIENT_ID", auth::SERVICE_CLIENT)),
                client_secret: self
                    .client_secret
                    .clone()
                    .unwrap_or_else(|| auth::SERVICE_CLIENT_SECRET.to_string()),
            };
        }
        let username = self
            .user
            .clone()
            .unwrap_or_else(|| auth::env_or("PLATFORM_USER", auth::ADMIN_USER));
        let password = match (&self.password, &self.user) {
            (Some(p), _) => p.clone(),
            // A user named on the command line: the dev realm's convention, unless set.
            (None, Some(u)) => auth::env_or("PLATFORM_PASSWORD", u),
            (None, None) => auth::env_or("PLATFORM_PASSWORD", auth::ADMIN_PASSWORD),
        };
        Grant::Password {
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| auth::CLI_CLIENT.to_string()),
            username,
            password,
        }
    }
}

pub async fn run(g: &Global, args: TokenArgs) -> Result<()> {
    let stack = StackFile::resolve(&g.stack)?.load()?;
    let rt = Runtime::connect().await?;
    let obs = Observer::new(rt, stack).await?;
    obs.require_running()?;
    let set = auth::fetch_token(&obs, &args.grant()).await?;
    if g.json {
        output::json(&set.raw)
    } else {
        crate::outln!("{}", set.token.access_token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::{Cli, Command};

    fn grant(args: &[&str]) -> Grant {
        let cli =
            Cli::try_parse_from(std::iter::once("platform").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Token(t) => t.grant(),
            other => panic!("{other:?}"),
        }
    }

    /// A user without a password uses the dev realm's convention (password = user name);
    /// client credentials default to platform-service; the two modes exclude each other.
    #[test]
    fn grants_from_arguments() {
        assert_eq!(
            grant(&["token", "--user", "alice"]),
            Grant::Password {
                client_id: "platform-cli".into(),
                username: "alice".into(),
                password: "alice".into()
            }
        );
        assert_eq!(
            grant(&["token", "-u", "bob", "-p", "secret"]),
            Grant::Password {
                client_id: "platform-cli".into(),
                username: "bob".into(),
                password: "secret".into()
            }
        );
        assert!(matches!(
            grant(&["token", "--client-credentials"]),
            Grant::ClientCredentials { client_id, .. } if client_id == "platform-service"
        ));
        assert!(
            Cli::try_parse_from(["platform", "token", "--client-credentials", "--user", "x"])
                .is_err()
        );
    }
}
