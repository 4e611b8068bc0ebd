//! `platform completions SHELL`: the completion script clap_complete derives from the CLI.

use clap::CommandFactory;

use super::Cli;
use crate::Result;

/// Writes the script for `shell` to stdout.
pub fn run(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "platform", &mut std::io::stdout());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bash script completes our subcommands.
    #[test]
    fn bash_script_names_subcommands() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "platform",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("_platform"));
        assert!(text.contains("images"));
        assert!(text.contains("validate"));
    }
}
