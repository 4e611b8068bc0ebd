//! Throwaway MariaDB servers, one per test, with database-per-service accounts.
//!
//! A fresh data directory needs `mariadb-install-db` (system tables, root accounts). That is done once
//! per machine and server version into a template under `target/testkit/`, and every instance starts
//! from a copy of it. Each instance then runs Debian's `mariadbd` with `--no-defaults` (no system
//! config, no system data dir), its own socket and a free port on 127.0.0.1.
//!
//! Server options are chosen for tests: a small buffer pool so many instances fit in memory, no
//! native AIO (its per-process kernel quota runs out with many parallel servers), and
//! `innodb_flush_log_at_trx_commit=2`, which survives a crash or `SIGKILL` of the server (the log is
//! in the OS cache) and only loses data on an OS crash, which tests do not simulate.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

use crate::paths::{find_program, running_as_root, sanitize, target_dir};
use crate::process::{Spec, log_tail};
use crate::server::{Instance, Server, new_instance_dir};
use crate::{Error, Result};

/// Password of `root@127.0.0.1` in every instance. Constant on purpose: the servers are throwaway and
/// bound to loopback, and a fixed value keeps the template reusable.
pub const ROOT_PASSWORD: &str = "testkit-root";

/// Bumped whenever the template's initialisation changes, so stale templates are not reused.
const TEMPLATE_LAYOUT: &str = "v1";

/// InnoDB redo log size, identical at initialisation and at start so no resize happens per start.
const INNODB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=8M";

/// SQL run by `mariadb-install-db --extra-file` in bootstrap mode. `FLUSH PRIVILEGES` loads the grant
/// tables, which bootstrap mode skips, so account statements work; root gets a password for TCP and
/// the accounts named after the host (useless with `--skip-name-resolve`, and noisy in the log) go.
const TEMPLATE_SQL: &str = "
FLUSH PRIVILEGES;
DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1');
DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');
FLUSH PRIVILEGES;
CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY 'testkit-root';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
";

/// The credentials of one service's database: its own user, with rights on that database only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbAccess {
    /// Database name (also the user name).
    pub database: String,
    /// User with all privileges on `database` and none elsewhere.
    pub user: String,
    /// The user's random password.
    pub password: String,
    /// Server host, always `127.0.0.1`.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// `mysql://user:password@127.0.0.1:port/database`, what services take as their database URL.
    pub url: String,
}

/// A running (or stopped) throwaway MariaDB server. Dropping it kills the server and deletes its data.
#[derive(Debug)]
pub struct MariaDb {
    instance: Instance<MariaDbServer>,
}

/// How to run and probe `mariadbd`.
struct MariaDbServer {
    mariadbd: PathBuf,
}

impl Server for MariaDbServer {
    const NAME: &'static str = "mariadbd";
    // Usually well under a second; generous for a loaded 2-core machine.
    const START_TIMEOUT: Duration = Duration::from_secs(60);
    const STOP_GRACE: Duration = Duration::from_secs(30);

    fn spec(&self, dir: &Path, port: u16) -> Spec {
        server_spec(&self.mariadbd, dir, port)
    }

    /// Ready means a real MySQL handshake and login as root succeed over TCP.
    async fn probe(&self, port: u16) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(5), root_connection(port)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("login timed out".into()),
        }
    }
}

impl MariaDb {
    /// Starts a new server on a free port with an empty copy of the template data directory.
    ///
    /// Finds `mariadbd` at `$TESTKIT_MARIADBD`, `/usr/sbin/mariadbd` or on `$PATH`, and
    /// `mariadb-install-db` at `$TESTKIT_MARIADB_INSTALL_DB`, `/usr/bin/mariadb-install-db` or on `$PATH`.
    pub async fn start() -> Result<Self> {
        let mariadbd = find_program(
            "mariadbd",
            "TESTKIT_MARIADBD",
            &[PathBuf::from("/usr/sbin/mariadbd")],
            "install Debian's mariadb-server (./install.sh does)",
        )?;
        let template = ensure_template(&mariadbd).await?;

        let dir = new_instance_dir("testkit-mariadb-")?;
        let data = dir.path().join("data");
        tokio::task::spawn_blocking(move || copy_dir(&template, &data))
            .await
            .map_err(|e| Error::io("copying the MariaDB template")(std::io::Error::other(e)))??;

        let instance = Instance::start(MariaDbServer { mariadbd }, dir).await?;
        Ok(Self { instance })
    }

    /// `mysql://root:<password>@127.0.0.1:<port>/`: the administrator, for test setup only.
    pub fn url_root(&self) -> String {
        format!("mysql://root:{ROOT_PASSWORD}@127.0.0.1:{}/", self.port())
    }

    /// The TCP port on 127.0.0.1 (the same after `start_again`).
    pub fn port(&self) -> u16 {
        self.instance.port()
    }

    /// The instance's directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The server's log file (stdout and stderr of `mariadbd`, across restarts).
    pub fn log_path(&self) -> &Path {
        self.instance.log_path()
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.instance.pid()
    }

    /// Creates database `name` and a user `name` with a random password and all privileges on that
    /// database only: database per service, as in production.
    ///
    /// `name` must be 1 to 64 characters of `[A-Za-z0-9_]` (it goes into SQL as an identifier).
    pub async fn create_database(&self, name: &str) -> Result<DbAccess> {
        validate_name(name)?;
        self.instance.ensure_running()?;
        let port = self.port();
        let password: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let mut conn = root_connection(port).await?;
        // Names are validated above and the password is alphanumeric, so formatting them into the
        // statements is safe; account statements cannot take bind parameters for identifiers anyway.
        let statements = [
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
            format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"),
            format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'%'"),
        ];
        for statement in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .map_err(|source| Error::Sql {
                    context: format!("creating database and user {name}"),
                    source,
                })?;
        }
        let _ = conn.close().await;
        Ok(DbAccess {
            database: name.to_string(),
            user: name.to_string(),
            url: format!("mysql://{name}:{password}@127.0.0.1:{port}/{name}"),
            password,
            host: "127.0.0.1".into(),
            port,
        })
    }

    /// Stops the server gracefully (SIGTERM, clean InnoDB shutdown). Data and port are kept for
    /// [`start_again`](Self::start_again). For outage tests.
    pub async fn stop(&mut self) -> Result<()> {
        self.instance.stop().await
    }

    /// Kills the server with SIGKILL (a crash: InnoDB recovers at the next start).
    pub async fn kill(&mut self) -> Result<()> {
        self.instance.kill().await
    }

    /// Starts the server again on the same port with the same data, after `stop` or `kill`.
    /// Does nothing if it is running.
    pub async fn start_again(&mut self) -> Result<()> {
        self.instance.start_again().await
    }
}

async fn root_connection(port: u16) -> Result<MySqlConnection> {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("root")
        .password(ROOT_PASSWORD)
        .connect()
        .await
        .map_err(|source| Error::Sql {
            context: format!("logging in as root on 127.0.0.1:{port}"),
            source,
        })
}

/// The command line of one instance living in `dir`.
fn server_spec(mariadbd: &Path, dir: &Path, port: u16) -> Spec {
    let path_arg = |flag: &str, path: PathBuf| {
        let mut arg = OsString::from(flag);
        arg.push(path);
        arg
    };
    // `--no-defaults` must come first, or mariadbd reads /etc/mysql anyway.
    let mut args: Vec<OsString> = vec!["--no-defaults".into()];
    if running_as_root() {
        args.push("--user=root".into());
    }
    args.extend([
        path_arg("--datadir=", dir.join("data")),
        path_arg("--socket=", dir.join("mariadbd.sock")),
        path_arg("--pid-file=", dir.join("mariadbd.pid")),
        path_arg("--tmpdir=", dir.to_path_buf()),
        format!("--port={port}").into(),
        "--bind-address=127.0.0.1".into(),
        "--skip-name-resolve".into(),
        INNODB_LOG_FILE_SIZE.into(),
        "--innodb-buffer-pool-size=64M".into(),
        "--innodb-use-native-aio=0".into(),
        "--innodb-flush-log-at-trx-commit=2".into(),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_unicode_ci".into(),
        "--max-connections=500".into(),
    ]);
    Spec {
        name: "mariadbd".into(),
        program: mariadbd.to_path_buf(),
        args,
        env: Vec::new(),
        current_dir: Some(dir.to_path_buf()),
        log: dir.join("mariadbd.log"),
    }
}

/// Returns the template data directory for this `mariadbd`, creating it on first use.
///
/// Parallel test processes may all arrive here at once on a new machine. A lock file makes one of
/// them initialise while the others wait, and the template only appears (by an atomic rename) once
/// complete, so a process killed half-way leaves nothing that looks usable.
async fn ensure_template(mariadbd: &Path) -> Result<PathBuf> {
    let mariadbd = mariadbd.to_path_buf();
    tokio::task::spawn_blocking(move || ensure_template_blocking(&mariadbd))
        .await
        .map_err(|e| Error::io("initialising the MariaDB template")(std::io::Error::other(e)))?
}

fn ensure_template_blocking(mariadbd: &Path) -> Result<PathBuf> {
    let version = server_version(mariadbd)?;
    let base = target_dir().join("testkit");
    let name = format!("mariadb-{version}-{TEMPLATE_LAYOUT}");
    let template = base.join(&name);
    if template.is_dir() {
        return Ok(template);
    }

    std::fs::create_dir_all(&base).map_err(Error::io(format!("creating {}", base.display())))?;
    let lock_path = base.join(format!("{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io(format!("opening {}", lock_path.display())))?;
    lock.lock()
        .map_err(Error::io(format!("locking {}", lock_path.display())))?;
    // Another process may have finished while this one waited for the lock.
    if template.is_dir() {
        return Ok(template);
    }

    let started = Instant::now();
    let work = base.join(format!("{name}.tmp"));
    if work.exists() {
        // Left by a process that died while holding the lock; the lock proves nobody uses it.
        std::fs::remove_dir_all(&work)
            .map_err(Error::io(format!("removing stale {}", work.display())))?;
    }
    let sql = base.join(format!("{name}.sql"));
    std::fs::write(&sql, TEMPLATE_SQL).map_err(Error::io(format!("writing {}", sql.display())))?;
    let log = base.join(format!("{name}.init.log"));
    let log_file =
        std::fs::File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
    let log_err = log_file
        .try_clone()
        .map_err(Error::io(format!("opening {}", log.display())))?;

    let install_db = find_program(
        "mariadb-install-db",
        "TESTKIT_MARIADB_INSTALL_DB",
        &[PathBuf::from("/usr/bin/mariadb-install-db")],
        "install Debian's mariadb-server (./install.sh does)",
    )?;
    let mut command = std::process::Command::new(&install_db);
    command.arg("--no-defaults");
    if running_as_root() {
        command.arg("--user=root");
    }
    // basedir tells install-db which server and SQL scripts to use: those of this mariadbd.
    if let Some(basedir) = mariadbd.parent().and_then(Path::parent) {
        command.arg(format!("--basedir={}", basedir.display()));
    }
    let status = command
        .arg(format!("--datadir={}", work.display()))
        .arg(format!("--extra-file={}", sql.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            INNODB_LOG_FILE_SIZE,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(Error::io(format!("running {}", install_db.display())))?;
    if !status.success() {
        return Err(Error::Start {
            name: "mariadb-install-db".into(),
            reason: format!("exited with {status}"),
            // Its real error is near the top, above a long generic help text.
            tail: log_tail(&log, 60),
            log,
        });
    }
    std::fs::rename(&work, &template).map_err(Error::io(format!(
        "renaming {} to {}",
        work.display(),
        template.display()
    )))?;
    tracing::info!(elapsed = ?started.elapsed(), template = %template.display(), "MariaDB template initialised");
    Ok(template)
}

/// The server's version, e.g. `10.11.19-MariaDB-0+deb12u1`, from `mariadbd --version`.
fn server_version(mariadbd: &Path) -> Result<String> {
    let output = std::process::Command::new(mariadbd)
        .arg("--version")
        .output()
        .map_err(Error::io(format!(
            "running {} --version",
            mariadbd.display()
        )))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "Ver")
        .nth(1)
        .unwrap_or(text.trim());
    if version.is_empty() {
        return Err(Error::Start {
            name: "mariadbd".into(),
            reason: format!("`{} --version` printed nothing", mariadbd.display()),
            log: mariadbd.to_path_buf(),
            tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(sanitize(version.as_ref()))
}

/// Copies a directory tree of plain files (a MariaDB data directory).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io(format!("creating {}", to.display())))?;
    let entries =
        std::fs::read_dir(from).map_err(Error::io(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("reading {}", from.display())))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(Error::io(format!("inspecting {}", source.display())))?;
        if kind.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(Error::io(format!(
                "copying {} to {}",
                source.display(),
                target.display()
            )))?;
        }
    }
    Ok(())
}

/// Database and user names become SQL identifiers and account names.
fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > 64 {
        "must be 1 to 64 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        "only letters, digits and _ are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that could break out of an SQL identifier are refused.
    #[test]
    fn names_are_validated() {
        assert!(validate_name("orders").is_ok());
        assert!(validate_name("order_service_2").is_ok());
        for bad in ["", "a-b", "x`; DROP", "o'r", &"n".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    /// The instance options keep it off system paths and on loopback.
    #[test]
    fn server_spec_is_self_contained() {
        let spec = server_spec(Path::new("/usr/sbin/mariadbd"), Path::new("/tmp/x"), 3307);
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--no-defaults");
        assert!(args.contains(&"--datadir=/tmp/x/data".to_string()));
        assert!(args.contains(&"--socket=/tmp/x/mariadbd.sock".to_string()));
        assert!(args.contains(&"--bind-address=127.0.0.1".to_string()));
        assert!(args.contains(&"--port=3307".to_string()));
    }
}
