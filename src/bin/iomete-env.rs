//! `iomete-env`, the broker mode's entrypoint wrapper (see [`iomete_secrets_webhook::wrapper`]
//! and docs/iomete-env.md): `iomete-env install DEST`, or `iomete-env -- COMMAND [ARGS...]`.

use std::process::ExitCode;

use iomete_secrets_webhook::wrapper;

fn main() -> ExitCode {
    let env: Vec<_> = std::env::vars_os().collect();
    let termination_log = wrapper::termination_log(&env);
    // Returns only on failure: success is `exec` (or the end of `install`).
    let error = wrapper::run(std::env::args_os().skip(1).collect(), env);
    wrapper::report(&error, &termination_log);
    ExitCode::from(error.exit_status().code())
}
