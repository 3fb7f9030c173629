use rstest::rstest;

use super::*;

const ENV: &str = r#"[{"key": "DB_PASSWORD", "secretObject": {"key": "db_password", "source": {"type": "KUBERNETES", "id": "finance"}}}]"#;

fn found(text: &str) -> Vec<(String, String, String, usize, usize)> {
    templates("m.yaml", text)
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.origin.kind,
                t.origin.name,
                t.origin.path,
                t.origin.document,
                t.origin.line,
            )
        })
        .collect()
}

fn annotated(kind: &str, template_at: &str) -> String {
    let template = format!(
        "metadata:\n  annotations:\n    secrets.iomete.com/env-secrets: '{ENV}'\nspec:\n  containers:\n  - name: main\n"
    );
    let indent = |text: &str, by: usize| {
        text.lines()
            .map(|line| format!("{}{line}\n", " ".repeat(by)))
            .collect::<String>()
    };
    match template_at {
        "pod" => format!(
            "apiVersion: v1\nkind: {kind}\nmetadata:\n  name: p\n{}",
            indent(&template.replacen("metadata:\n", "", 1), 0)
        ),
        "spec.template" => format!(
            "kind: {kind}\nmetadata:\n  name: w\nspec:\n  template:\n{}",
            indent(&template, 4)
        ),
        _ => format!(
            "kind: {kind}\nmetadata:\n  name: c\nspec:\n  jobTemplate:\n    spec:\n      template:\n{}",
            indent(&template, 8)
        ),
    }
}

#[rstest]
#[case::deployment("Deployment", "spec.template")]
#[case::stateful_set("StatefulSet", "spec.template")]
#[case::daemon_set("DaemonSet", "spec.template")]
#[case::job("Job", "spec.template")]
#[case::replica_set("ReplicaSet", "spec.template")]
#[case::cron_job("CronJob", "spec.jobTemplate.spec.template")]
fn workloads_yield_their_pod_template(#[case] kind: &str, #[case] path: &str) {
    let text = annotated(kind, path);
    let templates = templates("m.yaml", &text).unwrap();
    assert_eq!(templates.len(), 1, "{text}");
    assert_eq!(templates[0].origin.path, path);
    let annotations = templates[0].pod.metadata.annotations.as_ref().unwrap();
    assert!(annotations.contains_key("secrets.iomete.com/env-secrets"));
    assert_eq!(
        templates[0].pod.spec.as_ref().unwrap().containers[0].name,
        "main"
    );
}

#[test]
fn a_pod_is_its_own_template() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: spark-jobs\n  annotations:\n    a: b\nspec:\n  containers:\n  - name: main\n";
    let templates = templates("m.yaml", text).unwrap();
    assert_eq!(templates[0].namespace.as_deref(), Some("spark-jobs"));
    assert_eq!(templates[0].origin.path, "pod");
}

#[rstest]
#[case::spark_application("SparkApplication", "spec")]
#[case::scheduled("ScheduledSparkApplication", "spec.template")]
fn spark_applications_yield_driver_and_executor(#[case] kind: &str, #[case] at: &str) {
    let part = |role: &str| {
        json!({
            "annotations": {"secrets.iomete.com/env-secrets": ENV},
            "labels": {"team": "finance"},
            "env": [{"name": "PLAIN", "value": "x"}],
            "sidecars": [{"name": format!("{role}-sidecar")}],
        })
    };
    let spark_spec =
        json!({"type": "Python", "driver": part("driver"), "executor": part("executor")});
    let spec = if kind == "SparkApplication" {
        spark_spec
    } else {
        json!({"schedule": "@hourly", "template": spark_spec})
    };
    let object = json!({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": kind, "metadata": {"name": "etl"}, "spec": spec});
    let templates = templates("m.json", &object.to_string()).unwrap();
    let paths: Vec<_> = templates.iter().map(|t| t.origin.path.clone()).collect();
    assert_eq!(paths, [format!("{at}.driver"), format!("{at}.executor")]);
    for (template, role) in templates.iter().zip(["driver", "executor"]) {
        let labels = template.pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["spark-role"], role);
        let containers = &template.pod.spec.as_ref().unwrap().containers;
        assert_eq!(containers[0].name, format!("spark-kubernetes-{role}"));
        assert_eq!(containers[0].env.as_ref().unwrap()[0].name, "PLAIN");
        assert_eq!(containers[1].name, format!("{role}-sidecar"));
    }
}

#[test]
fn lists_and_multiple_documents_are_read_in_order() {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}},
        {"kind": "ConfigMap", "metadata": {"name": "ignored"}},
        {"kind": "Deployment", "metadata": {"name": "b"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}},
    ]});
    let text = format!(
        "# leading comment\n---\nkind: Pod\nmetadata:\n  name: first\nspec:\n  containers: [{{name: c}}]\n---\n{list}\n"
    );
    let names: Vec<_> = found(&text)
        .into_iter()
        .map(|(kind, name, _, document, line)| format!("{kind}/{name}@{document}:{line}"))
        .collect();
    assert_eq!(names, ["Pod/first@1:3", "Pod/a@2:9", "Deployment/b@2:9"]);
}

#[test]
fn json_streams_and_arrays_are_read() {
    let pod = |name: &str| json!({"kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c"}]}});
    let text = format!("{}\n{}", pod("a"), json!([pod("b"), pod("c")]));
    let names: Vec<_> = found(&text).into_iter().map(|found| found.1).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

/// Malformed input names the file, the document and the line, and quotes nothing from it.
#[rstest]
#[case::bad_yaml(
    "kind: Pod\n---\nkind: Pod\nmetadata: {name: [unclosed\n",
    2,
    4,
    "not valid YAML"
)]
#[case::tab_indent("kind: Pod\nmetadata:\n\tname: x\n", 1, 3, "not valid YAML")]
#[case::bad_json(
    "{\"kind\": \"Pod\"}\n{\"kind\": \"Pod\", \"metadata\": \n",
    2,
    3,
    "not valid JSON"
)]
#[case::not_a_pod_template(
    "kind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: \"s3cr3t-value\"\n",
    1,
    1,
    "Deployment/w spec.template is not a valid pod template"
)]
fn malformed_manifests_name_file_document_and_line(
    #[case] text: &str,
    #[case] document: usize,
    #[case] line: usize,
    #[case] problem: &str,
) {
    let error = templates("deploy/app.yaml", text).unwrap_err();
    let message = error.to_string();
    let ManifestError::Malformed {
        file,
        document: at_document,
        line: at_line,
        ..
    } = &error
    else {
        panic!("{message}");
    };
    assert_eq!(file, "deploy/app.yaml");
    assert_eq!((*at_document, *at_line), (document, line), "{message}");
    assert!(message.contains(problem), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
}

#[test]
fn objects_without_pods_yield_nothing() {
    assert!(found("kind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n").is_empty());
    assert!(found("# only a comment\n").is_empty());
}
