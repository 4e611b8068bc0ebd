//! The per-stack fault supervisor: a detached `platform fault-supervisor` process, not the one
//! that injected, that reverts every fault of one stack at its planned end.
//!
//! - **Started** by whatever records a fault (`inject`), and again by any fault command that
//!   finds records but no supervisor (`faults`, `heal`, `down`, after a reboot or a `kill -9`
//!   of the supervisor itself). It runs in its own process group, so Ctrl-C in the terminal
//!   that started it, or killing the injecting CLI, does not reach it.
//! - **One per stack**: it holds an exclusive `flock` on `<state>/stacks/<stack>/supervisor.lock`
//!   for its lifetime; a second one finds the lock taken and exits at once. The kernel drops the
//!   lock when the process dies, so a dead supervisor never blocks the next.
//! - **Loop**: read the records, revert (and verify) each due one concurrently, remove it when
//!   verified, otherwise count the attempt and retry later (1, 2, 4 ... 30 s apart); sleep until
//!   the next end or one second, whichever is sooner, so new records are seen.
//! - **Exit** when no record is left: under the store lock it checks again that the directory
//!   is empty, then releases its own lock. An injector saves its record under the same store
//!   lock and then checks the supervisor lock, so either the supervisor sees the new record or
//!   the injector sees no supervisor and starts one: a record is never left unsupervised.
//! - **Log**: `<state>/stacks/<stack>/supervisor.log`, one line per revert.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;

use super::record::{self, FaultRecord};
use super::store::Store;
use super::{Ctx, FaultError, Result, Verify, revert_one};
use crate::runtime::Runtime;
use crate::stack::{Stack, StackFile};

/// The hidden subcommand that runs the supervisor.
pub const SUBCOMMAND: &str = "fault-supervisor";
/// Overrides the binary the supervisor is started from (tests of the library, whose own
/// executable is a test harness).
pub const BIN_ENV: &str = "PLATFORM_BIN";
/// The longest the loop sleeps, so new records are noticed soon.
const TICK: Duration = Duration::from_secs(1);

/// Starts the stack's supervisor unless one runs.
pub fn ensure(store: &Store) -> Result<()> {
    // Taken and released around the check so an exiting supervisor (which holds the store lock
    // while it decides) has either exited or seen our record.
    let guard = store.lock()?;
    let running = store.supervisor_running()?;
    drop(guard);
    if running {
        return Ok(());
    }
    spawn(store)
}

/// The binary to start: `$PLATFORM_BIN`, else this one when it is `platform`.
pub(crate) fn binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(BIN_ENV).filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| FaultError::State {
        message: format!("cannot find this executable to start the fault supervisor: {e}"),
    })?;
    if exe.file_stem().is_some_and(|s| s == "platform") {
        Ok(exe)
    } else {
        Err(FaultError::State {
            message: format!(
                "cannot start the fault supervisor from {} (not the platform binary): set {BIN_ENV}",
                exe.display()
            ),
        })
    }
}

fn spawn(store: &Store) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let bin = binary()?;
    let log_path = store.supervisor_log_path();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| FaultError::State {
            message: format!("cannot open {}: {e}", log_path.display()),
        })?;
    let log2 = log.try_clone().map_err(|e| FaultError::State {
        message: format!("cannot open {}: {e}", log_path.display()),
    })?;
    let mut child = std::process::Command::new(&bin)
        .arg(SUBCOMMAND)
        .arg("--store")
        .arg(store.dir())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // Its own process group: the terminal's Ctrl-C and a kill of the injector's group miss it.
        .process_group(0)
        .spawn()
        .map_err(|e| FaultError::State {
            message: format!("cannot start the fault supervisor {}: {e}", bin.display()),
        })?;
    // Reap it when it exits if this process lives that long (the dashboard does).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

fn log(line: impl std::fmt::Display) {
    eprintln!(
        "{} {line}",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
}

/// The supervisor's main loop (see the module docs); returns when no fault is left or when
/// another supervisor holds the lock.
pub async fn run(dir: &Path) -> Result<()> {
    let store = Store::at(dir);
    let Some(lock) = store.try_supervisor_lock()? else {
        return Ok(());
    };
    log(format_args!(
        "supervisor {} started for {}",
        std::process::id(),
        dir.display()
    ));
    let rt = Runtime::connect().await?;
    loop {
        let records = match store.load_all() {
            Ok(r) => r,
            Err(e) => {
                log(format_args!("cannot read the records: {e}"));
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        if records.is_empty() {
            let guard = store.lock()?;
            if store.load_all()?.is_empty() {
                log("no fault left; supervisor exits");
                drop(lock);
                drop(guard);
                return Ok(());
            }
            continue;
        }
        let now = Utc::now();
        let due: Vec<FaultRecord> = record::due(&records, now).into_iter().cloned().collect();
        let reverts = due.iter().map(|r| revert(&rt, &store, r));
        futures::future::join_all(reverts).await;
        let records = store.load_all().unwrap_or_default();
        let wait = record::next_due(&records)
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(TICK)
            .min(TICK);
        tokio::time::sleep(wait).await;
    }
}

/// A context for reverting `r`: its stack file when it still loads, else a stack of that name
/// alone (container and network reverts need nothing more).
fn ctx_for(rt: &Runtime, store: &Store, r: &FaultRecord) -> Result<Ctx> {
    let stack = r
        .stack_file
        .as_deref()
        .filter(|f| Path::new(f).is_file())
        .and_then(|f| StackFile::at(PathBuf::from(f)).check().ok()?.stack)
        .filter(|s| s.name == r.stack)
        .unwrap_or_else(|| Stack {
            name: r.stack.clone(),
            description: None,
            file: PathBuf::new(),
            services: Default::default(),
        });
    Ctx::with_store(rt.clone(), stack, store.clone())
}

async fn revert(rt: &Runtime, store: &Store, r: &FaultRecord) {
    let outcome = match ctx_for(rt, store, r) {
        Ok(ctx) => revert_one(&ctx, r, Verify::Healthy).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(detail) => {
            log(format_args!(
                "{} {} on {} reverted at its end: {detail}",
                r.id, r.kind, r.container
            ));
            if let Err(e) = store.remove(&r.id) {
                log(format_args!("{}: {e}", r.id));
            }
        }
        Err(e) => {
            log(format_args!(
                "{} {} on {}: revert failed, will retry: {e}",
                r.id, r.kind, r.container
            ));
            // Only if heal did not finish it meanwhile.
            if let Ok(guard) = store.lock()
                && let Ok(Some(mut current)) = store.get(&r.id)
            {
                current.attempts += 1;
                current.last_error = Some(e.to_string());
                let _ = store.save(&current);
                drop(guard);
            }
        }
    }
}
