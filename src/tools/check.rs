//! `check -f FILE|DIR|-`: the webhook's own decision on every pod template of some manifests,
//! before they are deployed.
//!
//! Each template goes through what an admission runs: the strict parser
//! ([`injection::parse_references`]), the namespace's scope from the same caches and
//! [`ScopePolicy`](crate::backends::kubernetes::ScopePolicy), the plan
//! ([`injection::plan_references`]) and, for what the plan would fetch, the existence of the
//! store key or the Vault secret, mapped to the code and message the webhook would answer
//! ([`AdmissionError::kind`], [`AdmissionError::message`]). Each reference is also planned on
//! its own, so every bad reference is named, not only the first. No value is read: a store key
//! is looked up in the store's key list, a Vault secret by a KV v2 metadata read (so the field
//! of a `path#field` key is not checked). With `--offline`, the grammar only.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::cluster::{self, ClusterView};
use super::manifest::{self, ManifestError, Origin, Template};
use super::{Report, ToolError, Verdict};
use crate::admission::AdmissionError;
use crate::backends::kubernetes::store_secret_name;
use crate::boot::tool_args::CheckArgs;
use crate::decision::delivery::DeliveryPolicy;
use crate::decision::entrypoints::EntrypointTable;
use crate::decision::injection::{self, BrokerSettings, InjectionError, Settings};
use crate::decision::legacy::parse_template;
use crate::decision::pod::Pod;
use crate::decision::reference::{
    INJECTED_ANNOTATION, References, SecretRef, Source, VERSIONS_ANNOTATION,
};

/// The verdict on one reference of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferenceCheck {
    /// How the pod references it, e.g. `env "DB_PASSWORD" <- KUBERNETES/finance/db_password`.
    pub reference: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What was checked, when it was ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
}

/// The verdicts on one pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateCheck {
    pub origin: Origin,
    pub namespace: String,
    /// What the webhook would answer for the whole pod (its first problem).
    pub pod: Verdict,
    pub references: Vec<ReferenceCheck>,
}

impl TemplateCheck {
    /// No verdict yet on `template`, created in `namespace`.
    fn new(template: &Template, namespace: &str) -> Self {
        TemplateCheck {
            origin: template.origin.clone(),
            namespace: namespace.to_owned(),
            pod: Verdict::Ok,
            references: Vec::new(),
        }
    }

    /// Denied references, or one for the pod when it is denied for another reason.
    pub fn problems(&self) -> usize {
        let denied = self
            .references
            .iter()
            .filter(|r| !r.verdict.is_ok())
            .count();
        if denied == 0 && !self.pod.is_ok() {
            1
        } else {
            denied
        }
    }
}

pub async fn run(args: &CheckArgs) -> Result<Report, ToolError> {
    let policy = args.tool.scope_policy()?;
    let templates = read_inputs(&args.files)?;
    if args.offline {
        let checks = templates
            .iter()
            .map(|template| offline(template, args.namespace.as_deref().unwrap_or("-")))
            .collect();
        return Ok(report(checks, true));
    }
    let (client, context_namespace) = cluster::client(&args.tool).await?;
    let fallback = args.namespace.clone().unwrap_or(context_namespace);
    let namespace_of = |template: &Template| {
        template
            .namespace
            .clone()
            .unwrap_or_else(|| fallback.clone())
    };
    let names: Vec<String> = templates
        .iter()
        .map(namespace_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let view = ClusterView::read(&client, policy, Some(&names), Duration::from_secs(5)).await?;
    let mut checks = Vec::new();
    for template in &templates {
        checks.push(check(&view, template, &namespace_of(template)).await);
    }
    Ok(report(checks, false))
}

/// Reads every manifest named: files, directories (their `.yaml`, `.yml`, `.json` files, in
/// name order) and `-` (standard input).
pub fn read_inputs(inputs: &[String]) -> Result<Vec<Template>, ToolError> {
    let mut templates = Vec::new();
    for input in inputs {
        let read_error = |source| ManifestError::Read {
            file: input.clone(),
            source,
        };
        if input == "-" {
            let text = std::io::read_to_string(std::io::stdin()).map_err(read_error)?;
            templates.extend(manifest::templates("<stdin>", &text)?);
            continue;
        }
        let path = Path::new(input);
        let files = if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(read_error)?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| {
                    file.extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json")
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
                file: name.clone(),
                source,
            })?;
            templates.extend(manifest::templates(&name, &text)?);
        }
    }
    Ok(templates)
}

/// The pod as a new one would be admitted: what a previous admission wrote (from
/// `kubectl get -o yaml`) is dropped, so the references are checked, not skipped.
fn as_new(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(annotations) = &mut pod.metadata.annotations {
        annotations.remove(INJECTED_ANNOTATION);
        annotations.remove(VERSIONS_ANNOTATION);
    }
    pod
}

/// The grammar only: the strict parser and the legacy placeholder grammar.
pub fn offline(template: &Template, namespace: &str) -> TemplateCheck {
    let pod = as_new(&template.pod);
    let mut check = TemplateCheck::new(template, namespace);
    match injection::parse_references(&pod) {
        Ok(references) => {
            for (reference, _) in described(&references) {
                check.references.push(ReferenceCheck {
                    reference,
                    verdict: Verdict::Ok,
                    checked: Some("grammar".into()),
                });
            }
        }
        Err(error) => check.pod = Verdict::denied(&error.into()),
    }
    for container in pod.spec.iter().flat_map(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
    }) {
        for var in container.env.iter().flatten() {
            let Some(value) = &var.value else { continue };
            if let Err(source) = parse_template(value)
                && check.pod.is_ok()
            {
                let error = InjectionError::Placeholder {
                    container: container.name.clone(),
                    env: var.name.clone(),
                    source,
                };
                check.pod = Verdict::denied(&error.into());
            }
        }
    }
    check
}

/// Every V2 reference of `references`, described, each as a reference list of its own.
fn described(references: &References) -> Vec<(String, References)> {
    let alone = |env, spark_conf| References {
        env,
        spark_conf,
        containers: references.containers.clone(),
        injected_digest: None,
    };
    let env = references.env.iter().map(|entry| {
        (
            format!("env {:?} <- {}", entry.env_name, entry.secret),
            alone(vec![entry.clone()], Vec::new()),
        )
    });
    let spark = references.spark_conf.iter().map(|entry| {
        (
            format!("spark {:?} <- {}", entry.property, entry.secret),
            alone(Vec::new(), vec![entry.clone()]),
        )
    });
    env.chain(spark).collect()
}

/// The webhook's decision on `template`, created in `namespace`, against the cluster.
pub async fn check(view: &ClusterView, template: &Template, namespace: &str) -> TemplateCheck {
    let pod = as_new(&template.pod);
    let mut check = TemplateCheck::new(template, namespace);
    if !injection::mentions_secrets(&pod) {
        return check;
    }
    let Some(scope) = view.caches.namespace_scope(namespace) else {
        check.pod = Verdict::Denied {
            code: 404,
            reason: "NotFound",
            message: format!(
                "namespace {namespace:?} does not exist (the webhook answers 503 for a namespace it has not seen)"
            ),
        };
        return check;
    };
    let settings = check_settings();
    let references = match injection::parse_references(&pod) {
        Ok(references) => references,
        Err(error) => {
            check.pod = Verdict::denied(&error.into());
            return check;
        }
    };
    let mut v2_secrets = BTreeSet::new();
    for (reference, alone) in described(&references) {
        let secret = alone
            .env
            .first()
            .map(|entry| entry.secret.clone())
            .or_else(|| alone.spark_conf.first().map(|entry| entry.secret.clone()));
        let Some(secret) = secret else { continue };
        v2_secrets.insert(secret.clone());
        let planned = injection::plan_references(&pod, &alone, &scope, &settings, &view.vault);
        let (verdict, checked) = match planned {
            Err(error) => (Verdict::denied(&error.into()), None),
            Ok(plan) if plan.needed_secrets().contains(&secret) => exists(view, &secret).await,
            Ok(_) => (
                Verdict::Ok,
                Some("authorized; not delivered to this pod (executors get Spark properties from the driver)".into()),
            ),
        };
        check.references.push(ReferenceCheck {
            reference,
            verdict,
            checked,
        });
    }
    match injection::plan_references(&pod, &references, &scope, &settings, &view.vault) {
        Err(error) => check.pod = Verdict::denied(&error.into()),
        Ok(plan) => {
            // Legacy placeholders: planned for the whole pod, checked like the rest.
            for injected in plan
                .injected
                .iter()
                .filter(|i| !v2_secrets.contains(&i.secret))
            {
                let (verdict, checked) = exists(view, &injected.secret).await;
                check.references.push(ReferenceCheck {
                    reference: format!("{} <- {}", injected.target, injected.secret),
                    verdict,
                    checked,
                });
            }
        }
    }
    check
}

/// Whether `secret` exists, without reading a value.
async fn exists(view: &ClusterView, secret: &SecretRef) -> (Verdict, Option<String>) {
    match &secret.source {
        Source::Kubernetes(store) => match view.caches.snapshot().fetch(secret) {
            Ok(_) => (
                Verdict::Ok,
                Some(format!("key exists in Secret {}", store_secret_name(store))),
            ),
            Err(error) => (Verdict::denied(&AdmissionError::from(error)), None),
        },
        Source::Vault(config) => match view.vault.current_version(config, &secret.key).await {
            Ok(current) => (
                Verdict::Ok,
                Some(format!(
                    "{} exists (version {}); its field is not checked, that would read the value",
                    current.metadata_path, current.version
                )),
            ),
            Err(error) => (Verdict::denied(&AdmissionError::from(error)), None),
        },
    }
}

/// The report of a run: each template, then a summary line.
pub fn report(checks: Vec<TemplateCheck>, offline: bool) -> Report {
    let problems: usize = checks.iter().map(TemplateCheck::problems).sum();
    let references: usize = checks.iter().map(|check| check.references.len()).sum();
    let mut human = String::new();
    for check in &checks {
        let _ = writeln!(human, "{} in namespace {}", check.origin, check.namespace);
        for reference in &check.references {
            let _ = match (&reference.verdict, &reference.checked) {
                (Verdict::Ok, Some(checked)) => {
                    writeln!(human, "  ok      {} ({checked})", reference.reference)
                }
                (verdict, _) => writeln!(
                    human,
                    "  {:<7} {}: {verdict}",
                    mark(verdict),
                    reference.reference
                ),
            };
        }
        // The pod's verdict repeats a reference's when that one is the first problem.
        let repeated = check.references.iter().any(|r| r.verdict == check.pod);
        if !check.pod.is_ok() && !repeated {
            let _ = writeln!(human, "  pod     {}", check.pod);
        }
    }
    let mode = if offline {
        " (offline: grammar only)"
    } else {
        ""
    };
    let _ = writeln!(
        human,
        "{} pod templates, {references} references, {problems} problems{mode}",
        checks.len()
    );
    let json = json!({
        "offline": offline,
        "problems": problems,
        "templates": checks,
    });
    Report {
        human,
        json,
        problems,
    }
}

fn mark(verdict: &Verdict) -> &'static str {
    if verdict.is_ok() { "ok" } else { "DENIED" }
}

#[cfg(test)]
mod tests;

/// Secrets V2 on, and broker delivery available with the shipped entrypoint table, so a
/// broker-mode pod is checked for what only that mode refuses (an unknown entrypoint, reserved
/// names, denied env names). The operator's `--broker-entrypoints` entries are not known here.
fn check_settings() -> Settings {
    let broker = BrokerSettings {
        url: "https://broker.invalid".into(),
        ca_pem: String::new(),
        image: String::new(),
        pull_policy: "IfNotPresent",
        entrypoints: EntrypointTable::shipped(),
    };
    Settings {
        delivery: DeliveryPolicy {
            broker_enabled: true,
            ..DeliveryPolicy::default()
        },
        broker: Some(std::sync::Arc::new(broker)),
        ..Settings::env_delivery(true)
    }
}
