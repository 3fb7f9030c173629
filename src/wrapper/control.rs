//! What `iomete-env` is told to do: its two command-line forms and its control variables
//! (`IOMETE_ENV_*`, written into the container by the admission), read once and checked before
//! anything touches the network. The token is not read here: the kubelet rotates it, so
//! [`super::fetch`] reads it again for every attempt.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::broker::protocol::broker_trust_anchors;
use crate::decision::delivery::{
    CONTROL_ENV_PREFIX, ENV_BROKER_CA, ENV_BROKER_URL, ENV_CONTAINER, ENV_DEADLINE, ENV_REFERENCES,
    ENV_TERMINATION_LOG, ENV_TOKEN_FILE, TOKEN_DIR, TOKEN_FILE, is_broker_url,
};
use crate::decision::reference::{ReferenceError, References, parse_reference_list};

use super::ExitStatus;

/// How long `iomete-env` keeps asking a broker that is unreachable or asks to retry, unless
/// [`ENV_DEADLINE`] says otherwise: long enough for a broker restart, short enough that a pod
/// that cannot start says so within minutes.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// The longest [`ENV_DEADLINE`] accepted.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);
/// Where the kubelet reads a container's termination message unless the pod says otherwise.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

const USAGE: &str = "usage: iomete-env install DEST | iomete-env -- COMMAND [ARGS...]";

/// The arguments or control variables cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{USAGE}")]
    Usage,
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{0} is not valid UTF-8")]
    NotUnicode(&'static str),
    #[error("{ENV_BROKER_URL} must be an https:// URL with a host and no path, query or fragment")]
    BrokerUrl,
    #[error("{ENV_BROKER_CA} holds no PEM certificate usable as a trust anchor")]
    BrokerCa,
    #[error("{ENV_CONTAINER} is not a container name (a DNS label)")]
    Container,
    #[error(
        "{ENV_DEADLINE} must be a whole number of seconds from 1 to {}",
        MAX_DEADLINE.as_secs()
    )]
    Deadline,
    #[error("{ENV_REFERENCES} is not a valid reference list")]
    References(#[source] ReferenceError),
}

impl ControlError {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            ControlError::References(_) => ExitStatus::References,
            _ => ExitStatus::Usage,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `install DEST`: copy this binary to `DEST`.
    Install { dest: PathBuf },
    /// `-- COMMAND [ARGS...]`: deliver the values, then run the command.
    Exec { command: Vec<OsString> },
}

impl Invocation {
    /// Parses the arguments after the program name. Only two forms exist, so nothing else is
    /// guessed at: an option that looks like ours may be the application's.
    pub fn parse(args: Vec<OsString>) -> Result<Self, ControlError> {
        let mut args = args.into_iter();
        let first = args.next().ok_or(ControlError::Usage)?;
        let rest: Vec<OsString> = args.collect();
        if first == "--" && !rest.is_empty() {
            return Ok(Invocation::Exec { command: rest });
        }
        match <[OsString; 1]>::try_from(rest) {
            Ok([dest]) if first == "install" && !dest.is_empty() => Ok(Invocation::Install {
                dest: PathBuf::from(dest),
            }),
            _ => Err(ControlError::Usage),
        }
    }
}

/// The control variables, checked.
#[derive(Debug, Clone)]
pub struct Control {
    /// `https://host[:port]`, no trailing slash.
    pub broker_url: String,
    /// The certificates the broker's must chain to (public), and no other.
    pub broker_ca: Vec<CertificateDer<'static>>,
    pub container: String,
    /// The container's reference list: the names the answer may, and must, hold.
    pub references: References,
    pub token_file: PathBuf,
    /// How long to keep trying the broker, from start.
    pub deadline: Duration,
}

impl Control {
    /// Reads the control variables from `env` (the process environment).
    pub fn from_env(env: &[(OsString, OsString)]) -> Result<Self, ControlError> {
        let required = |name: &'static str| {
            lookup(env, name)
                .ok_or(ControlError::Missing(name))?
                .to_str()
                .ok_or(ControlError::NotUnicode(name))
        };
        let broker_url = required(ENV_BROKER_URL)?;
        if !is_broker_url(broker_url) {
            return Err(ControlError::BrokerUrl);
        }
        let broker_url = broker_url.strip_suffix('/').unwrap_or(broker_url);
        let broker_ca =
            broker_trust_anchors(required(ENV_BROKER_CA)?).ok_or(ControlError::BrokerCa)?;
        let container = required(ENV_CONTAINER)?;
        if !crate::decision::names::is_dns_label(container) {
            return Err(ControlError::Container);
        }
        let references =
            parse_reference_list(required(ENV_REFERENCES)?).map_err(ControlError::References)?;
        let token_file = lookup(env, ENV_TOKEN_FILE)
            .filter(|path| !path.is_empty())
            .map_or_else(|| Path::new(TOKEN_DIR).join(TOKEN_FILE), PathBuf::from);
        let deadline = match lookup(env, ENV_DEADLINE) {
            None => DEFAULT_DEADLINE,
            Some(text) => parse_deadline(text).ok_or(ControlError::Deadline)?,
        };
        Ok(Control {
            broker_url: broker_url.to_owned(),
            broker_ca,
            container: container.to_owned(),
            references,
            token_file,
            deadline,
        })
    }
}

/// The termination message path of `env`: [`ENV_TERMINATION_LOG`], else the kubelet's default.
pub fn termination_log(env: &[(OsString, OsString)]) -> PathBuf {
    lookup(env, ENV_TERMINATION_LOG)
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_TERMINATION_LOG), PathBuf::from)
}

/// Whether `name` is one of `iomete-env`'s control variables, which the application never sees.
pub fn is_control_name(name: &OsStr) -> bool {
    name.as_encoded_bytes()
        .starts_with(CONTROL_ENV_PREFIX.as_bytes())
}

/// The last value of `name` in `env`, as `getenv` would find it.
fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    env.iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_os_str())
}

fn parse_deadline(text: &OsStr) -> Option<Duration> {
    let seconds: u64 = text.to_str()?.trim().parse().ok()?;
    let deadline = Duration::from_secs(seconds);
    (!deadline.is_zero() && deadline <= MAX_DEADLINE).then_some(deadline)
}
