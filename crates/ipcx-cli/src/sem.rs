//! `ipcx sem`: semaphores for operators and scripts — ipcx's own (in
//! shared memory), POSIX named (`sem_open`) or System V (`semget`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ipcx::sync::{NamedSemaphore, Semaphore, SysVSemaphoreSet};

#[derive(Args)]
pub struct SemArgs {
    #[command(subcommand)]
    command: SemCommand,
}

#[derive(Subcommand)]
enum SemCommand {
    /// Create a semaphore that outlives this command (remove it with `ipcx sem rm`).
    Create {
        /// Its name (SysV: a numeric key, or a name ipcx turns into one).
        name: String,
        /// Initial value.
        #[arg(long, default_value_t = 0)]
        value: u32,
        #[command(flatten)]
        flavor: Flavor,
    },
    /// Add one, waking a waiter (`post` as in `sem_post` is the same).
    #[command(visible_alias = "post")]
    Release {
        name: String,
        #[command(flatten)]
        flavor: Flavor,
    },
    /// Take one, waiting for it (exit 1 when --timeout passes first;
    /// `wait` as in `sem_wait` is the same).
    #[command(visible_alias = "wait")]
    Acquire {
        name: String,
        /// Give up after this long (e.g. 500ms, 10s); 0 only tries.
        #[arg(long, value_parser = crate::parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        flavor: Flavor,
    },
    /// Print the value.
    Get {
        name: String,
        #[command(flatten)]
        flavor: Flavor,
    },
    /// Remove it.
    Rm {
        name: String,
        #[command(flatten)]
        flavor: Flavor,
    },
}

/// Which kind of semaphore; without a flag, ipcx's own (or, for a name
/// only `sem_open` knows, the POSIX one).
#[derive(Args, Clone, Copy)]
struct Flavor {
    /// A POSIX named semaphore (`sem_open("/NAME")`, /dev/shm/sem.NAME).
    #[arg(long, conflicts_with = "sysv")]
    posix: bool,
    /// A System V semaphore set (`semget(KEY)`), semaphore 0 of it.
    #[arg(long)]
    sysv: bool,
}

enum Sem {
    Ipcx(Semaphore),
    Posix(NamedSemaphore),
    SysV(SysVSemaphoreSet),
}

/// A SysV key: a number as written (decimal or 0x hex), or a name's key.
fn sysv_key(name: &str) -> i32 {
    let parsed = match name.strip_prefix("0x") {
        Some(hex) => i32::from_str_radix(hex, 16).ok(),
        None => name.parse().ok(),
    };
    parsed.unwrap_or_else(|| SysVSemaphoreSet::key_for(name))
}

fn posix_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/sem.{name}")).exists()
}

fn open(name: &str, flavor: Flavor) -> Result<Sem> {
    Ok(if flavor.sysv {
        // Without SEM_UNDO: the kernel would revert a `wait` as soon as
        // this command exits.
        let mut set = SysVSemaphoreSet::open(sysv_key(name))?;
        set.set_undo(false);
        Sem::SysV(set)
    } else if flavor.posix || (posix_exists(name) && !ipcx_exists(name)) {
        Sem::Posix(NamedSemaphore::open(name)?)
    } else {
        Sem::Ipcx(Semaphore::open(&format!("shm:{name}?timeout=0s"))?)
    })
}

fn ipcx_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

pub fn run(a: SemArgs) -> Result<ExitCode> {
    match a.command {
        SemCommand::Create {
            name,
            value,
            flavor,
        } => {
            if flavor.sysv {
                let value = u16::try_from(value).context("a SysV semaphore holds at most 32767")?;
                let set = SysVSemaphoreSet::create(sysv_key(&name), 1, value)?;
                println!("created sysv semaphore key {:#x}", set.key());
            } else if flavor.posix {
                let sem = NamedSemaphore::create_persistent(&name, value)?;
                println!("created posix semaphore /{}", sem.name());
            } else {
                Semaphore::create(&format!("shm:{name}?persist"), value)?;
                println!("created semaphore {name}");
            }
        }
        SemCommand::Release { name, flavor } => match open(&name, flavor)? {
            Sem::Ipcx(s) => s.release()?,
            Sem::Posix(s) => s.release()?,
            Sem::SysV(s) => s.release(0)?,
        },
        SemCommand::Acquire {
            name,
            timeout,
            flavor,
        } => {
            let got = match (open(&name, flavor)?, timeout) {
                (Sem::Ipcx(s), None) => s.acquire().map(|()| true)?,
                (Sem::Ipcx(s), Some(t)) => s.acquire_timeout(t)?,
                (Sem::Posix(s), None) => s.acquire().map(|()| true)?,
                (Sem::Posix(s), Some(t)) => s.acquire_timeout(t)?,
                (Sem::SysV(s), None) => s.acquire(0).map(|()| true)?,
                (Sem::SysV(s), Some(t)) => s.acquire_timeout(0, t)?,
            };
            if !got {
                eprintln!("ipcx: timed out waiting for {name}");
                return Ok(ExitCode::FAILURE);
            }
        }
        SemCommand::Get { name, flavor } => {
            let v = match open(&name, flavor)? {
                Sem::Ipcx(s) => s.value(),
                Sem::Posix(s) => s.value()?,
                Sem::SysV(s) => s.value(0)?,
            };
            println!("{v}");
        }
        SemCommand::Rm { name, flavor } => {
            // `/jobs`, as C writes a POSIX name, is `jobs`.
            let name = name.strip_prefix('/').unwrap_or(&name);
            if flavor.sysv {
                SysVSemaphoreSet::open(sysv_key(name))?.remove()?;
            } else {
                let url = if flavor.posix || (posix_exists(name) && !ipcx_exists(name)) {
                    format!("sem:{name}")
                } else {
                    format!("shm:{name}?persist")
                };
                let removed = ipcx::registry::Registry::open()?.remove(&url)?;
                if removed.is_empty() {
                    bail!("no semaphore {name} recorded (see `ipcx ls`)");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
