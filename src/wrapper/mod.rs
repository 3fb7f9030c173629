//! `iomete-env`, the broker mode's entrypoint wrapper: it owns everything that runs inside a
//! wrapped container before the application does.
//!
//! `iomete-env install DEST` (the init container) copies the binary into the shared volume.
//! `iomete-env -- CMD [ARGS...]` reads its control variables ([`control`]), asks the broker for
//! the container's values with the pod's token ([`fetch`]), accepts only an answer that matches
//! the container's reference list exactly ([`answer`]), builds the application's environment
//! without the control variables ([`environment`]) and `exec`s the command in its own process
//! ([`launch`]). Every failure ends the process with one exit code per cause ([`ExitStatus`])
//! and one line that names what failed, never a value, in the termination message and on stderr.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;

use crate::edge::telemetry::error_chain;

pub mod answer;
pub mod control;
pub mod environment;
pub mod fetch;
pub mod launch;

pub use control::{Control, Invocation};

/// The exit code of each cause of failure, documented in `docs/iomete-env.md`. Codes avoid 1
/// and 2 (what most programs use), 126 and 127 (the shell's "cannot execute" and "not found")
/// and 128 and above (death by a signal), so a pod's exit code alone says which step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 64: bad arguments, or a control variable missing or malformed.
    Usage = 64,
    /// 65: `IOMETE_ENV_REFERENCES` is not a valid reference list.
    References = 65,
    /// 66: the token file cannot be read, or is empty.
    Token = 66,
    /// 67: the broker could not be reached, or kept asking to retry, until the deadline.
    Unreachable = 67,
    /// 68: the broker refused for good (a 4xx other than 429 and not marked retriable).
    Refused = 68,
    /// 69: the broker's answer is not acceptable: malformed, a name outside the list, a denied
    /// name, a duplicate or a missing reference.
    Answer = 69,
    /// 70: a value cannot be delivered (a NUL, over the kernel's size limit, or what Spark's
    /// launcher cannot carry).
    Undeliverable = 70,
    /// 71: the command could not be executed.
    Exec = 71,
    /// 72: `install` could not write the binary.
    Install = 72,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why `iomete-env` stopped. Every message names variables, properties, files or the broker,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Answer(#[from] answer::AnswerError),
    #[error(transparent)]
    Environment(#[from] environment::EnvironmentError),
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
}

impl WrapperError {
    /// The exit code of this failure.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            WrapperError::Control(error) => error.exit_status(),
            WrapperError::Fetch(error) => error.exit_status(),
            WrapperError::Answer(_) => ExitStatus::Answer,
            WrapperError::Environment(_) => ExitStatus::Undeliverable,
            WrapperError::Launch(error) => error.exit_status(),
        }
    }
}

/// Runs `iomete-env` with `args` (without the program name) in the environment `env`. Returns
/// only on failure: `install` and a successful `exec` end the process themselves.
pub fn run(args: Vec<OsString>, env: Vec<(OsString, OsString)>) -> WrapperError {
    let invocation = match Invocation::parse(args) {
        Ok(invocation) => invocation,
        Err(error) => return error.into(),
    };
    let result = match invocation {
        Invocation::Install { dest } => launch::install(&dest).map_err(WrapperError::from),
        Invocation::Exec { command } => deliver_and_exec(command, env),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) => error,
    }
}

fn deliver_and_exec(
    command: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
) -> Result<(), WrapperError> {
    let control = Control::from_env(&env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fetch::FetchError::Runtime)?;
    let body = runtime.block_on(fetch::fetch(&control))?;
    // The resolver's and the connection pool's tasks die with the runtime, before the exec.
    drop(runtime);
    let values = answer::accept(&control.references, answer::parse(&body)?)?;
    let child_env = environment::child_environment(env, &values)?;
    Err(launch::exec(command, child_env).into())
}

/// Reports `error`: one line on stderr and in the termination message file (from the
/// environment's `IOMETE_ENV_TERMINATION_LOG`, or the default), whose write may fail unheard:
/// the exit code still says what happened.
pub fn report(error: &WrapperError, termination_log: &Path) {
    let line = one_line(&format!("iomete-env: {}", error_chain(error)));
    let _ = writeln!(std::io::stderr(), "{line}");
    let _ = std::fs::write(termination_log, format!("{line}\n"));
}

/// The termination message path `env` asks for.
pub fn termination_log(env: &[(OsString, OsString)]) -> std::path::PathBuf {
    control::termination_log(env)
}

/// The kubelet shows the termination message as is: control characters (a newline from a
/// broker's refusal text) would break the one-line promise.
fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 1024;
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect()
}

#[cfg(test)]
mod tests;
