//! `ls | grep .txt`, as two processes joined by an ipcx pipe.
//!
//! The parent lists a directory and sends each file name as one message;
//! the child — this same program, started again by `ipcx::spawn` — prints
//! the names that contain `.txt`. Each name is a whole message, so a name
//! with a newline in it stays one name, which the shell pipeline cannot
//! promise.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p ipcx --example pipeline -- /some/dir
//! ```
//!
//! The directory defaults to `.`.

use std::process::{Command, ExitCode};

use ipcx::Link;

/// Tells the re-started program that it is the child.
const ROLE: &str = "IPCX_PIPELINE_ROLE";

fn main() -> ExitCode {
    let result = match std::env::var(ROLE).as_deref() {
        Ok("grep") => grep(),
        _ => ls(std::env::args_os().nth(1).unwrap_or_else(|| ".".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The parent: sends every name in `dir` to the child, then waits for it.
fn ls(dir: std::ffi::OsString) -> Result<(), Box<dyn std::error::Error>> {
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let me = std::env::current_exe()?;
    let mut grep = Command::new(me);
    grep.env(ROLE, "grep");
    let (mut child, mut link) = ipcx::spawn(grep)?;
    for name in &entries {
        link.send(name.as_encoded_bytes())?;
    }
    // Closing the link is the end of the list for the child.
    link.close();
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the grep process failed: {status}").into());
    }
    Ok(())
}

/// The child: prints each name that contains `.txt`, until the end.
fn grep() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: this process was started by ipcx::spawn above, takes its
    // pipe first thing, and runs no other thread.
    let mut link = unsafe { Link::from_inherited() }?;
    loop {
        match link.recv() {
            Ok(name) => {
                if name.windows(4).any(|w| w == b".txt") {
                    println!("{}", String::from_utf8_lossy(&name));
                }
            }
            Err(e) if e.is_closed() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
