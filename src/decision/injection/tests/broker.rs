//! The broker mechanism: the wrapped entrypoint, the control env, the volumes and init
//! container, what only this mode refuses, and that no value is ever written.

use super::*;
use crate::decision::delivery::{
    DELIVERY_ANNOTATION, DeliveryError, ENV_BROKER_CA, ENV_BROKER_URL, ENV_CONTAINER,
    ENV_REFERENCES, INSTALL_CONTAINER, TOKEN_VOLUME, WRAPPER_VOLUME,
};
use crate::decision::entrypoints::EntrypointTable;
use crate::decision::reference::parse_reference_list;

const WRAPPER: &str = "/var/run/iomete-env/iomete-env";
const CANARY: &str = "broker-canary-value-7f3e";

fn broker_settings(default: Delivery, required: Option<Delivery>) -> Settings {
    let broker = BrokerSettings {
        url: "https://webhook.iomete-system.svc:8444".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB$(HOME)\n-----END CERTIFICATE-----\n".into(),
        image: "iomete/iomete-secrets-webhook:0.1.0".into(),
        pull_policy: "IfNotPresent",
        entrypoints: EntrypointTable::shipped(),
    };
    Settings {
        delivery: DeliveryPolicy {
            default,
            required,
            broker_enabled: true,
            ..DeliveryPolicy::env_only()
        },
        broker: Some(Arc::new(broker)),
        ..V2_ON
    }
}

fn broker() -> Settings {
    broker_settings(Delivery::Env, None)
}

/// Plans in broker mode, renders with a canary for every value, applies.
fn wrap(original: &Value, settings: &Settings) -> (Plan, Rendered, Value) {
    let plan = plan(&pod(original), &finance(), settings, &vaults()).expect("a plan");
    let canaries: HashMap<SecretRef, String> = plan
        .needed_secrets()
        .into_iter()
        .map(|secret| (secret, CANARY.to_owned()))
        .collect();
    let rendered = render_with(&plan, &canaries, ValueMode::Live).expect("rendered");
    let text = String::from_utf8(rendered.patch.clone()).unwrap();
    assert!(!text.contains(CANARY), "a value was written: {text}");
    let patched = apply(original, &rendered.patch);
    (plan, rendered, patched)
}

fn annotated_pod(containers: Value, init: Value) -> Value {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    pod_json(
        &[(ENV, &annotation), (DELIVERY_ANNOTATION, "broker")],
        containers,
        init,
    )
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|var| var["name"] == name)?["value"]
        .as_str()
}

#[rstest]
#[case::own_command(
    json!({"name": "main", "image": "busybox", "command": ["/app/run", "--fast"], "args": ["x"]}),
    json!([WRAPPER, "--", "/app/run", "--fast"])
)]
#[case::spark_image_entrypoint(
    json!({"name": "main", "image": "apache/spark:3.5.8", "args": ["driver", "--properties-file", "/opt/spark/conf/spark.properties"]}),
    json!([WRAPPER, "--", "/opt/entrypoint.sh"])
)]
#[case::docker_stacks_cmd_kept_without_args(
    json!({"name": "main", "image": "quay.io/jupyter/pyspark-notebook:2024-10-07"}),
    json!([WRAPPER, "--", "tini", "-g", "--", "start.sh", "start-notebook.sh"])
)]
#[case::docker_stacks_args_replace_cmd(
    json!({"name": "main", "image": "jupyter/singleuser:latest", "args": ["jupyterhub-singleuser"]}),
    json!([WRAPPER, "--", "tini", "-g", "--", "start.sh"])
)]
#[case::empty_command_is_no_command(
    json!({"name": "main", "image": "spark:3.5.1", "command": [], "args": ["executor"]}),
    json!([WRAPPER, "--", "/opt/entrypoint.sh"])
)]
fn the_entrypoint_is_wrapped_and_args_untouched(#[case] container: Value, #[case] command: Value) {
    let original = annotated_pod(json!([container.clone()]), Value::Null);
    let (_, _, patched) = wrap(&original, &broker());
    let wrapped = &patched["spec"]["containers"][0];
    assert_eq!(wrapped["command"], command);
    assert_eq!(wrapped["args"], container["args"]);
}

#[test]
fn a_wrapped_pod_carries_references_volumes_and_the_install_container_but_no_value() {
    let spark = SPARK_CONF_SECRETS_ANNOTATION;
    let conf = json!([{"key": "spark.hadoop.fs.s3a.secret.key", "secretObject": {"key": "s3", "source": {"type": "KUBERNETES", "id": "global"}}}]).to_string();
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[
            (ENV, &annotation),
            (spark, &conf),
            (DELIVERY_ANNOTATION, "broker"),
        ],
        json!([
            {"name": "main", "image": "apache/spark:3.5.8", "args": ["driver"], "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "side", "image": "busybox", "command": ["sleep"]},
        ]),
        json!([{"name": "setup", "image": "busybox", "command": ["true"]}]),
    );
    let mut original = original;
    original["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    let (plan, rendered, patched) = wrap(&original, &broker());

    let spec = &patched["spec"];
    for (index, name) in [(0, "main"), (1, "side")] {
        let container = &spec["containers"][index];
        assert_eq!(env_value(container, ENV_CONTAINER), Some(name));
        assert_eq!(
            env_value(container, ENV_BROKER_URL),
            Some("https://webhook.iomete-system.svc:8444")
        );
        // Escaped for the kubelet, so the container sees the PEM as written.
        let ca = env_value(container, ENV_BROKER_CA).unwrap();
        assert_eq!(
            seen_by_container(&json!(ca)),
            broker().broker.unwrap().ca_pem
        );
        let list = parse_reference_list(env_value(container, ENV_REFERENCES).unwrap()).unwrap();
        assert_eq!(list.env[0].env_name, "DB_PASSWORD");
        assert_eq!(list.env[0].secret, domain("finance", "db_password"));
        assert_eq!(
            list.spark_conf[0].property,
            "spark.hadoop.fs.s3a.secret.key"
        );
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert!(
            mounts.ends_with(&[WRAPPER_VOLUME, TOKEN_VOLUME]),
            "{mounts:?}"
        );
    }
    assert_eq!(
        env_value(&spec["containers"][0], "A"),
        Some("1"),
        "existing env kept"
    );
    // The install container runs first, before the pod's own init containers.
    assert_eq!(spec["initContainers"][0]["name"], INSTALL_CONTAINER);
    assert_eq!(spec["initContainers"][1]["name"], "setup");
    assert!(
        spec["initContainers"][1].get("env").is_none(),
        "init containers are not targets"
    );
    let install = &spec["initContainers"][0];
    assert_eq!(install["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        install["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let volumes = spec["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 3);
    let token = &volumes[2]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "iomete-secrets-broker");
    assert_eq!(token["expirationSeconds"], 600);
    assert_eq!(plan.injected.len(), 4, "two references × two containers");
    assert!(rendered.audit_annotations[AUDIT_ANNOTATION_KEY].contains("db_password"));
    assert!(
        patched["metadata"]["annotations"]
            .get(VERSIONS_ANNOTATION_KEY)
            .is_none()
    );
}

const VERSIONS_ANNOTATION_KEY: &str = crate::decision::reference::VERSIONS_ANNOTATION;

#[test]
fn a_named_init_container_is_wrapped_at_its_shifted_index() {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[
            (ENV, &annotation),
            (DELIVERY_ANNOTATION, "broker"),
            (CONTAINERS_ANNOTATION, "migrate"),
        ],
        json!([{"name": "main", "image": "busybox", "command": ["sleep"]}]),
        json!([{"name": "first", "image": "busybox", "command": ["true"]}, {"name": "migrate", "image": "busybox", "command": ["/migrate"]}]),
    );
    let (_, _, patched) = wrap(&original, &broker());
    let init = &patched["spec"]["initContainers"];
    assert_eq!(init[0]["name"], INSTALL_CONTAINER);
    assert_eq!(init[2]["name"], "migrate");
    assert_eq!(init[2]["command"], json!([WRAPPER, "--", "/migrate"]));
    assert!(patched["spec"]["containers"][0].get("env").is_none());
}

#[test]
fn reinvocation_changes_nothing() {
    let original = annotated_pod(
        json!([{"name": "main", "image": "busybox", "command": ["run"]}]),
        Value::Null,
    );
    let (_, _, patched) = wrap(&original, &broker());
    let again = plan(&pod(&patched), &finance(), &broker(), &vaults()).unwrap();
    assert!(again.is_noop());
}

#[test]
fn executors_get_env_references_only() {
    let conf = json!([{"key": "spark.x", "secretObject": {"key": "s3", "source": {"type": "KUBERNETES", "id": "global"}}}]).to_string();
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let mut original = pod_json(
        &[
            (ENV, &annotation),
            (SPARK_CONF_SECRETS_ANNOTATION, &conf),
            (DELIVERY_ANNOTATION, "broker"),
        ],
        json!([{"name": "executor", "image": "apache/spark:3.5.8", "args": ["executor"]}]),
        Value::Null,
    );
    original["metadata"]["labels"]["spark-role"] = json!("executor");
    let (_, _, patched) = wrap(&original, &broker());
    let list = env_value(&patched["spec"]["containers"][0], ENV_REFERENCES).unwrap();
    let list = parse_reference_list(list).unwrap();
    assert_eq!(list.env.len(), 1);
    assert!(list.spark_conf.is_empty());
}

#[rstest]
#[case::unknown_image(
    json!([{"name": "main", "image": "registry.example.com/team/app:1"}]), None,
    "container \"main\" sets no command and its image \"registry.example.com/team/app:1\" is not in the broker's entrypoint table"
)]
#[case::reserved_volume(
    json!([{"name": "main", "image": "busybox", "command": ["run"]}]), Some(json!([{"name": "iomete-env", "emptyDir": {}}])),
    "this pod already has volume \"iomete-env\""
)]
#[case::reserved_env(
    json!([{"name": "main", "image": "busybox", "command": ["run"], "env": [{"name": "IOMETE_ENV_REFERENCES", "value": "{}"}]}]), None,
    "this pod already has container \"main\" env \"IOMETE_ENV_REFERENCES\""
)]
#[case::reserved_container(
    json!([{"name": "iomete-env-install", "image": "busybox", "command": ["run"]}]), None,
    "this pod already has container \"iomete-env-install\""
)]
#[case::reserved_mount_path(
    json!([{"name": "main", "image": "busybox", "command": ["run"], "volumeMounts": [{"name": "x", "mountPath": "/var/run/iomete-env/"}]}]), None,
    "mount path \"/var/run/iomete-env/\""
)]
fn broker_only_refusals_are_named(
    #[case] containers: Value,
    #[case] volumes: Option<Value>,
    #[case] expected: &str,
) {
    let mut original = annotated_pod(containers, Value::Null);
    if let Some(volumes) = volumes {
        original["spec"]["volumes"] = volumes;
    }
    let message = denial(&original, &finance(), &broker()).to_string();
    assert!(message.contains(expected), "{message}");
}

#[test]
fn loader_and_runtime_names_are_refused() {
    let annotation = env_secrets(&[("LD_PRELOAD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation), (DELIVERY_ANNOTATION, "broker")],
        json!([{"name": "main", "image": "busybox", "command": ["run"]}]),
        Value::Null,
    );
    assert_eq!(
        denial(&original, &finance(), &broker()),
        InjectionError::DeniedEnvName("LD_PRELOAD".into())
    );
}

#[test]
fn placeholders_are_refused_in_broker_mode_and_kept_in_env_mode() {
    let containers = json!([{"name": "main", "image": "busybox", "command": ["run"], "env": [{"name": "TOKEN", "value": "${secrets.api_token}"}]}]);
    let broker_pod = pod_json(
        &[(DELIVERY_ANNOTATION, "broker")],
        containers.clone(),
        Value::Null,
    );
    assert_eq!(
        denial(&broker_pod, &finance(), &broker()),
        InjectionError::PlaceholderInBrokerMode {
            container: "main".into(),
            env: "TOKEN".into()
        }
    );
    let required = broker_settings(Delivery::Env, Some(Delivery::Broker));
    let unannotated = pod_json(&[], containers, Value::Null);
    assert!(matches!(
        denial(&unannotated, &finance(), &required),
        InjectionError::PlaceholderInBrokerMode { .. }
    ));
    assert!(plan(&pod(&unannotated), &finance(), &broker(), &vaults()).is_ok());
}

#[rstest]
#[case::required(broker_settings(Delivery::Env, Some(Delivery::Broker)), "env", DeliveryError::Required { required: Delivery::Broker })]
#[case::disabled(V2_ON, "broker", DeliveryError::BrokerDisabled)]
#[case::unknown(broker(), "vault", DeliveryError::Unknown("vault".into()))]
fn the_delivery_choice_is_enforced(
    #[case] settings: Settings,
    #[case] asked: &str,
    #[case] expected: DeliveryError,
) {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation), (DELIVERY_ANNOTATION, asked)],
        json!([{"name": "main", "image": "busybox", "command": ["run"]}]),
        Value::Null,
    );
    assert_eq!(
        denial(&original, &finance(), &settings),
        InjectionError::Delivery(expected)
    );
}

#[test]
fn the_default_mode_applies_to_unannotated_pods() {
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation)],
        json!([{"name": "main", "image": "busybox", "command": ["run"]}]),
        Value::Null,
    );
    let (plan, _, _) = wrap(&original, &broker_settings(Delivery::Broker, None));
    assert!(plan.broker.is_some());
    let env_plan = super::plan(&pod(&original), &finance(), &broker(), &vaults()).unwrap();
    assert!(env_plan.broker.is_none());
}

#[test]
fn scope_is_checked_as_in_env_mode() {
    let annotation = env_secrets(&[("DB_PASSWORD", "marketing", "db_password")]);
    let original = pod_json(
        &[(ENV, &annotation), (DELIVERY_ANNOTATION, "broker")],
        json!([{"name": "main", "image": "busybox", "command": ["run"]}]),
        Value::Null,
    );
    assert!(matches!(
        denial(&original, &finance(), &broker()),
        InjectionError::OutOfScope(_)
    ));
}

#[test]
fn a_domain_can_require_broker_delivery() {
    let mut settings = broker();
    settings.delivery.broker_required_domains = ["finance".to_owned()].into();
    let annotation = env_secrets(&[("DB_PASSWORD", "finance", "db_password")]);
    let container = json!([{"name": "main", "image": "busybox", "command": ["run"]}]);
    let unannotated = pod_json(&[(ENV, &annotation)], container.clone(), Value::Null);
    let (plan, _, _) = wrap(&unannotated, &settings);
    assert!(plan.broker.is_some(), "finance's pods are wrapped");
    let asks_env = pod_json(
        &[(ENV, &annotation), (DELIVERY_ANNOTATION, "env")],
        container,
        Value::Null,
    );
    assert_eq!(
        denial(&asks_env, &finance(), &settings),
        InjectionError::Delivery(DeliveryError::Required {
            required: Delivery::Broker
        })
    );
    let marketing = ns("marketing-jobs", Some("marketing"), false);
    let theirs = env_secrets(&[("DB_PASSWORD", "marketing", "db_password")]);
    let container = json!([{"name": "main", "image": "busybox", "command": ["run"]}]);
    let other = pod_json(&[(ENV, &theirs)], container, Value::Null);
    let env_plan = plan_for(&other, &marketing, &settings);
    assert!(
        env_plan.broker.is_none(),
        "other domains keep the cluster's default"
    );
}

fn plan_for(original: &Value, namespace: &NamespaceScope, settings: &Settings) -> Plan {
    plan(&pod(original), namespace, settings, &vaults()).expect("a plan")
}
