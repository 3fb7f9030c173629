//! The two ways `iomete-env` ends well: `install` copies its own executable into the shared
//! volume, and `exec` replaces `iomete-env` with the application (same PID, no child process,
//! nothing left running beside it, so signals and the exit code are the application's own).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ExitStatus;
use super::environment::ChildEnv;

/// The mode of the installed binary: anyone may run it, no one may change it.
pub const INSTALLED_MODE: u32 = 0o555;

/// `install` or `exec` failed; the message names the path or program.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot find iomete-env's own executable")]
    OwnExecutable(#[source] io::Error),
    #[error("cannot install iomete-env as {path}")]
    Install {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot execute {program:?}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl LaunchError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            LaunchError::OwnExecutable(_) | LaunchError::Install { .. } => ExitStatus::Install,
            LaunchError::Exec { .. } => ExitStatus::Exec,
        }
    }
}

/// Copies this executable to `dest`: written to a new file beside it, made read-only and
/// executable, then renamed over `dest`, so a container never sees half a binary (an init
/// container restarted mid-copy leaves at most a stray temporary file).
pub fn install(dest: &Path) -> Result<(), LaunchError> {
    let source = std::env::current_exe().map_err(LaunchError::OwnExecutable)?;
    let failed = |source| LaunchError::Install {
        path: dest.to_owned(),
        source,
    };
    let name = dest
        .file_name()
        .ok_or_else(|| failed(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary_name = OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(temporary_name);
    let written = copy_executable(&source, &temporary).and_then(|()| fs::rename(&temporary, dest));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

fn copy_executable(source: &Path, temporary: &Path) -> io::Result<()> {
    let mut input = fs::File::open(source)?;
    // create_new: never write through a file or link someone else put there.
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(temporary)?;
    io::copy(&mut input, &mut output)?;
    output.set_permissions(fs::Permissions::from_mode(INSTALLED_MODE))?;
    output.sync_all()
}

/// Replaces this process with `command` in `env`. The program is looked up in `env`'s `PATH`
/// as `execvp` does (a script without `#!` runs under `/bin/sh`, as a shell would run it).
/// Returns only if the `exec` failed.
pub fn exec(command: Vec<OsString>, env: ChildEnv) -> LaunchError {
    let mut parts = command.into_iter();
    let program = parts.next().unwrap_or_default();
    let source = Command::new(&program)
        .args(parts)
        .env_clear()
        .envs(env.vars())
        .exec();
    LaunchError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
