//! The fake's HTTP behaviour checked at the wire level: exact `Status` bodies, lists,
//! raw watch streams, selectors, patches, discovery, failure injection and shutdown.

mod common;

use std::time::Duration;

use common::{RawWatch, eventually, get, send, within};
use kube_fake::{FakeApiServer, FakeApiServerOptions};
use serde_json::json;

#[tokio::test]
async fn a_missing_secret_is_a_not_found_status() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let response = get(&fake, "/api/v1/namespaces/team-a/secrets/x").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.content_type, "application/json");
    assert_eq!(
        response.body,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "secrets \"x\" not found",
            "reason": "NotFound",
            "details": { "name": "x", "kind": "secrets" },
            "code": 404,
        })
    );
}

#[tokio::test]
async fn lists_carry_the_global_resource_version_and_full_objects() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    fake.apply_secret("team-b", "b", &[("k", b"v")]);
    let last = fake.apply_secret("team-a", "a", &[("k", b"v")]);
    assert_eq!(last, "4");

    let all = get(&fake, "/api/v1/secrets").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body["kind"], "SecretList");
    assert_eq!(all.body["apiVersion"], "v1");
    assert_eq!(all.body["metadata"]["resourceVersion"], "4");
    let names: Vec<_> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap(),
                item["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        ["team-a/a", "team-b/b"],
        "ordered by namespace, then name"
    );

    let item = &all.body["items"][0];
    assert_eq!(item["kind"], "Secret");
    assert_eq!(item["apiVersion"], "v1");
    assert_eq!(item["type"], "Opaque");
    assert_eq!(item["data"], json!({ "k": "dg==" }));
    assert_eq!(item["metadata"]["resourceVersion"], "4");
    assert_eq!(item["metadata"]["uid"].as_str().unwrap().len(), 36);
    let created = item["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 20, "{created}");

    let namespaces = get(&fake, "/api/v1/namespaces").await;
    assert_eq!(namespaces.body["kind"], "NamespaceList");
    assert_eq!(
        namespaces.body["items"][0]["status"],
        json!({ "phase": "Active" })
    );
    assert_eq!(
        namespaces.body["items"][0]["metadata"]["labels"],
        json!({ "kubernetes.io/metadata.name": "team-a" })
    );
}

/// The names of the namespaces a list with `query` returns.
async fn namespace_names(fake: &FakeApiServer, query: &str) -> Vec<String> {
    let response = get(fake, &format!("/api/v1/namespaces?{query}")).await;
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("a", &[("tier", "gold"), ("managed", "yes")]);
    fake.apply_namespace("b", &[("tier", "silver")]);
    fake.apply_namespace("c", &[]);
    let cases: &[(&str, &[&str])] = &[
        ("labelSelector=tier%3Dgold", &["a"]),
        ("labelSelector=tier", &["a", "b"]),
        ("labelSelector=%21tier", &["c"]),
        ("labelSelector=tier%21%3Dgold", &["b", "c"]),
        ("labelSelector=tier%3Dgold,managed%3Dno", &[]),
        ("labelSelector=kubernetes.io%2Fmetadata.name%3Dc", &["c"]),
        ("fieldSelector=metadata.name%3Db", &["b"]),
        (
            "fieldSelector=metadata.name%21%3Db&labelSelector=tier",
            &["a"],
        ),
        (
            "fieldSelector=status.phase%3DActive&limit=1",
            &["a", "b", "c"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(namespace_names(&fake, query).await, *expected, "{query}");
    }
    for unsupported in [
        "labelSelector=tier+in+%28gold%29",
        "fieldSelector=spec.x%3Dy",
    ] {
        let response = get(&fake, &format!("/api/v1/namespaces?{unsupported}")).await;
        assert_eq!(
            (response.status, response.body["reason"].as_str()),
            (400, Some("BadRequest"))
        );
    }
}

#[tokio::test]
async fn writes_follow_the_real_servers_rules() {
    let fake = FakeApiServer::start().await;
    let secret_body = |name: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name },
            "data": { "a": "YQ==" },
            "stringData": { "b": "bee" },
        })
        .to_string()
    };
    let secrets = "/api/v1/namespaces/team-a/secrets";

    let no_namespace = send(
        &fake,
        "POST",
        secrets,
        "application/json",
        secret_body("s").as_bytes(),
    )
    .await;
    assert_eq!(no_namespace.status, 404);
    assert_eq!(
        no_namespace.body["message"],
        "namespaces \"team-a\" not found"
    );
    assert_eq!(
        no_namespace.body["details"],
        json!({ "name": "team-a", "kind": "namespaces" })
    );

    fake.apply_namespace("team-a", &[]);
    let created = send(
        &fake,
        "POST",
        secrets,
        "application/json",
        secret_body("s").as_bytes(),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["data"], json!({ "a": "YQ==", "b": "YmVl" }));
    assert!(
        created.body.get("stringData").is_none(),
        "stringData is write-only"
    );
    assert_eq!(created.body["metadata"]["namespace"], "team-a");
    assert_eq!(fake.secret("team-a", "s").unwrap(), created.body);

    let again = send(
        &fake,
        "POST",
        secrets,
        "application/json",
        secret_body("s").as_bytes(),
    )
    .await;
    assert_eq!(
        (again.status, again.body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(again.body["message"], "secrets \"s\" already exists");

    let garbage = send(&fake, "POST", secrets, "application/json", b"{not json").await;
    assert_eq!(
        (garbage.status, garbage.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert_eq!(garbage.body["kind"], "Status");

    let bad_name = send(
        &fake,
        "POST",
        secrets,
        "application/json",
        secret_body("Bad_Name").as_bytes(),
    )
    .await;
    assert_eq!(
        (bad_name.status, bad_name.body["reason"].as_str()),
        (422, Some("Invalid"))
    );

    let yaml = send(&fake, "POST", secrets, "application/yaml", b"metadata: {}").await;
    assert_eq!(yaml.status, 415);

    // PUT with the current resourceVersion succeeds; with the old one it conflicts.
    let path = "/api/v1/namespaces/team-a/secrets/s";
    let mut update = created.body.clone();
    update["data"] = json!({ "a": "Yg==" });
    let updated = send(
        &fake,
        "PUT",
        path,
        "application/json",
        update.to_string().as_bytes(),
    )
    .await;
    assert_eq!(updated.status, 200);
    assert_ne!(
        updated.body["metadata"]["resourceVersion"],
        created.body["metadata"]["resourceVersion"]
    );
    assert_eq!(
        updated.body["metadata"]["uid"],
        created.body["metadata"]["uid"]
    );
    assert_eq!(
        updated.body["metadata"]["creationTimestamp"],
        created.body["metadata"]["creationTimestamp"]
    );
    let stale = send(
        &fake,
        "PUT",
        path,
        "application/json",
        update.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (stale.status, stale.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let renamed = send(
        &fake,
        "PUT",
        path,
        "application/json",
        secret_body("other").as_bytes(),
    )
    .await;
    assert_eq!(renamed.status, 400);
    let missing = send(
        &fake,
        "PUT",
        "/api/v1/namespaces/team-a/secrets/nope",
        "application/json",
        secret_body("nope").as_bytes(),
    )
    .await;
    assert_eq!(missing.status, 404);

    let deleted = send(&fake, "DELETE", path, "application/json", b"").await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(
        deleted.body["details"]["uid"],
        created.body["metadata"]["uid"]
    );
    let deleted_again = send(&fake, "DELETE", path, "application/json", b"").await;
    assert_eq!(deleted_again.status, 404);
}

#[tokio::test]
async fn patches_apply_as_merge_or_json_patches() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[("keep", "1"), ("drop", "1")]);
    let path = "/api/v1/namespaces/team-a";

    let merge = br#"{"metadata":{"labels":{"new":"2","drop":null}}}"#;
    let merged = send(&fake, "PATCH", path, "application/merge-patch+json", merge).await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(
        merged.body["metadata"]["labels"],
        json!({ "keep": "1", "new": "2", "kubernetes.io/metadata.name": "team-a" })
    );

    let strategic = br#"{"metadata":{"labels":{"s":"3"}},"$setElementOrder/x":[]}"#;
    let merged = send(
        &fake,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        strategic,
    )
    .await;
    assert_eq!(merged.body["metadata"]["labels"]["s"], "3");

    let json_patch = br#"[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]"#;
    let patched = send(
        &fake,
        "PATCH",
        path,
        "application/json-patch+json",
        json_patch,
    )
    .await;
    assert_eq!(patched.body["metadata"]["annotations"], json!({ "a": "b" }));

    let failing_test = br#"[{"op":"test","path":"/metadata/name","value":"other"}]"#;
    let failed = send(
        &fake,
        "PATCH",
        path,
        "application/json-patch+json",
        failing_test,
    )
    .await;
    assert_eq!(failed.status, 422);

    let stale = br#"{"metadata":{"resourceVersion":"1","labels":{"x":"y"}}}"#;
    let conflict = send(&fake, "PATCH", path, "application/merge-patch+json", stale).await;
    assert_eq!(
        (conflict.status, conflict.body["reason"].as_str()),
        (409, Some("Conflict"))
    );

    let apply = send(&fake, "PATCH", path, "application/apply-patch+yaml", b"{}").await;
    assert_eq!(apply.status, 415);
    let missing = send(
        &fake,
        "PATCH",
        "/api/v1/namespaces/nope",
        "application/merge-patch+json",
        b"{}",
    )
    .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_status_errors() {
    let fake = FakeApiServer::start().await;
    for path in [
        "/api/v1/pods",
        "/apis/apps/v1",
        "/openapi/v2",
        "/openapi/v3/api/v1",
        "/api/v1/namespaces/a/configmaps",
        "/apis/secrets.iomete.com/v2",
    ] {
        let response = get(&fake, path).await;
        assert_eq!(
            (response.status, response.body["kind"].as_str()),
            (404, Some("Status")),
            "{path}"
        );
    }
    let delete_collection = send(&fake, "DELETE", "/api/v1/namespaces/a/secrets", "", b"").await;
    assert_eq!(delete_collection.status, 405);
    let post_all = send(&fake, "POST", "/api/v1/secrets", "application/json", b"{}").await;
    assert_eq!(post_all.status, 405);
    let bad_watch = get(&fake, "/api/v1/namespaces?watch=maybe").await;
    assert_eq!(bad_watch.status, 400);
    let bad_version = get(&fake, "/api/v1/namespaces?watch=true&resourceVersion=abc").await;
    assert_eq!(bad_version.status, 400);
}

#[tokio::test]
async fn discovery_documents_describe_namespaces_secrets_and_vault_configs() {
    let fake = FakeApiServer::start().await;
    let api = get(&fake, "/api").await;
    assert_eq!(
        (api.body["kind"].as_str(), &api.body["versions"]),
        (Some("APIVersions"), &json!(["v1"]))
    );
    let resources = get(&fake, "/api/v1").await;
    assert_eq!(resources.body["kind"], "APIResourceList");
    assert_eq!(resources.body["groupVersion"], "v1");
    let secrets = resources.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["name"] == "secrets")
        .expect("secrets are listed");
    assert_eq!(secrets["namespaced"], true);
    assert!(
        secrets["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("watch"))
    );
    let group_version = json!({ "groupVersion": "secrets.iomete.com/v1", "version": "v1" });
    let groups = get(&fake, "/apis").await;
    assert_eq!(
        groups.body,
        json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{
                "name": "secrets.iomete.com",
                "versions": [group_version],
                "preferredVersion": group_version,
            }],
        })
    );
    let group = get(&fake, "/apis/secrets.iomete.com").await;
    assert_eq!(
        group.body,
        json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": "secrets.iomete.com",
            "versions": [group_version],
            "preferredVersion": group_version,
        })
    );
    let custom = get(&fake, "/apis/secrets.iomete.com/v1").await;
    assert_eq!(
        custom.body,
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "secrets.iomete.com/v1",
            "resources": [
                {
                    "name": "vaultconfigs",
                    "singularName": "vaultconfig",
                    "namespaced": true,
                    "kind": "VaultConfig",
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    "shortNames": ["vc"],
                },
                {
                    "name": "vaultconfigs/status",
                    "singularName": "",
                    "namespaced": true,
                    "kind": "VaultConfig",
                    "verbs": ["get", "patch", "update"],
                },
            ],
        })
    );
    let core_names: Vec<_> = resources.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| resource["name"].as_str().unwrap())
        .collect();
    assert_eq!(core_names, ["namespaces", "secrets"]);
    let paths = get(&fake, "/").await;
    assert!(
        paths.body["paths"]
            .as_array()
            .unwrap()
            .contains(&json!("/apis/secrets.iomete.com/v1"))
    );
    let version = get(&fake, "/version").await;
    assert_eq!(version.body["major"], "1");
}

#[tokio::test]
async fn a_watch_without_resource_version_starts_with_the_current_state() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("a", &[]);
    fake.apply_namespace("b", &[]);
    let mut watch = RawWatch::open(&fake, "/api/v1/namespaces?watch=1").await;
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "a".into())
    );
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "b".into())
    );

    fake.apply_namespace("a", &[("x", "y")]);
    let modified = watch.next_event().await.unwrap();
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["metadata"]["labels"]["x"], "y");
    assert_eq!(
        modified["object"]["metadata"]["resourceVersion"],
        fake.resource_version()
    );
    assert_eq!(modified["object"]["kind"], "Namespace");
}

#[tokio::test]
async fn a_watch_from_a_resource_version_replays_later_changes_then_streams() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let from = fake.apply_secret("team-a", "before", &[("k", b"1")]);
    fake.apply_secret("team-a", "after", &[("k", b"1")]);
    fake.apply_secret("team-a", "before", &[("k", b"2")]);
    fake.delete_secret("team-a", "after");

    let path = format!("/api/v1/namespaces/team-a/secrets?watch=true&resourceVersion={from}");
    let mut watch = RawWatch::open(&fake, &path).await;
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "after".into())
    );
    assert_eq!(
        watch.next_type_and_name().await,
        ("MODIFIED".into(), "before".into())
    );
    let deleted = watch.next_event().await.unwrap();
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(
        deleted["object"]["metadata"]["resourceVersion"],
        fake.resource_version()
    );

    fake.apply_secret("team-a", "live", &[]);
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "live".into())
    );
}

#[tokio::test]
async fn selector_transitions_are_added_and_deleted_events() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("a", &[]);
    let mut watch = RawWatch::open(
        &fake,
        "/api/v1/namespaces?watch=true&labelSelector=managed%3Dtrue",
    )
    .await;
    eventually("the watch to open", || fake.open_watches() == 1).await;
    fake.apply_namespace("a", &[("managed", "true")]);
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "a".into())
    );
    fake.apply_namespace("a", &[("managed", "true"), ("x", "1")]);
    assert_eq!(
        watch.next_type_and_name().await,
        ("MODIFIED".into(), "a".into())
    );
    let version = fake.apply_namespace("a", &[("managed", "false")]);
    let left = watch.next_event().await.unwrap();
    assert_eq!(left["type"], "DELETED");
    assert_eq!(
        left["object"]["metadata"]["labels"]["managed"], "true",
        "the last matching state"
    );
    assert_eq!(left["object"]["metadata"]["resourceVersion"], version);
    fake.apply_namespace("other", &[]);
    fake.apply_namespace("third", &[("managed", "true")]);
    assert_eq!(
        watch.next_type_and_name().await,
        ("ADDED".into(), "third".into())
    );
}

#[tokio::test]
async fn a_watch_from_before_the_compaction_point_gets_one_expired_error() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("a", &[]);
    fake.apply_namespace("b", &[]);
    fake.compact();
    let mut watch = RawWatch::open(&fake, "/api/v1/namespaces?watch=true&resourceVersion=1").await;
    let error = watch.next_event().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["kind"], "Status");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert_eq!(error["object"]["status"], "Failure");
    assert_eq!(
        watch.next_event().await,
        None,
        "the response ends after the error"
    );

    let mut current =
        RawWatch::open(&fake, "/api/v1/namespaces?watch=true&resourceVersion=2").await;
    fake.apply_namespace("c", &[]);
    assert_eq!(
        current.next_type_and_name().await,
        ("ADDED".into(), "c".into())
    );
}

#[tokio::test]
async fn watches_end_at_their_timeout_and_on_break_watches() {
    let fake = FakeApiServer::start().await;
    let started = tokio::time::Instant::now();
    let mut timed = RawWatch::open(&fake, "/api/v1/namespaces?watch=true&timeoutSeconds=1").await;
    assert_eq!(timed.next_event().await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    let mut broken = RawWatch::open(&fake, "/api/v1/namespaces?watch=true").await;
    eventually("the watch to open", || fake.open_watches() == 1).await;
    fake.break_watches();
    assert_eq!(broken.next_event().await, None);
    eventually("the watch to be closed", || fake.open_watches() == 0).await;
}

#[tokio::test]
async fn bookmarks_carry_the_latest_resource_version_when_asked_for() {
    let fake = FakeApiServer::start_with(FakeApiServerOptions {
        bookmark_interval: Duration::from_millis(50),
        ..FakeApiServerOptions::default()
    })
    .await;
    fake.apply_namespace("watched", &[]);
    fake.apply_namespace("other", &[]);
    let from = fake.resource_version();
    let path = format!(
        "/api/v1/namespaces/watched/secrets?watch=true&allowWatchBookmarks=true&resourceVersion={from}"
    );
    let mut watch = RawWatch::open(&fake, &path).await;
    // A change the watch does not match still advances what its bookmarks report.
    let latest = fake.apply_secret("other", "s", &[]);
    let bookmark = within("a bookmark with the latest version", async {
        loop {
            let event = watch.next_event().await.expect("the watch stays open");
            assert_eq!(event["type"], "BOOKMARK");
            if event["object"]["metadata"]["resourceVersion"] == latest.as_str() {
                return event;
            }
        }
    })
    .await;
    assert_eq!(bookmark["object"]["kind"], "Secret");

    let mut without = RawWatch::open(&fake, "/api/v1/namespaces/watched/secrets?watch=true").await;
    fake.apply_secret("watched", "s", &[]);
    assert_eq!(
        without.next_type_and_name().await,
        ("ADDED".into(), "s".into()),
        "no bookmark first"
    );
}

#[tokio::test]
async fn an_unavailable_server_answers_503_and_still_records_requests() {
    let fake = FakeApiServer::start().await;
    fake.set_unavailable(true);
    let response = get(&fake, "/api/v1/namespaces?limit=1").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body["reason"], "ServiceUnavailable");
    assert_eq!(response.body["code"], 503);
    fake.set_unavailable(false);
    assert_eq!(get(&fake, "/api/v1/namespaces").await.status, 200);
    assert_eq!(
        fake.requests(),
        ["GET /api/v1/namespaces?limit=1", "GET /api/v1/namespaces"]
    );
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn stop_ends_watches_and_closes_the_port() {
    let fake = FakeApiServer::start().await;
    let address = fake.address();
    let mut watch = RawWatch::open(&fake, "/api/v1/namespaces?watch=true").await;
    within("stop", fake.stop()).await;
    assert_eq!(watch.next_event().await, None);
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn dropping_the_fake_shuts_it_down() {
    let fake = FakeApiServer::start().await;
    let address = fake.address();
    let mut watch = RawWatch::open(&fake, "/api/v1/namespaces?watch=true").await;
    drop(fake);
    assert_eq!(watch.next_event().await, None);
    let closed = within("the port to close", async {
        while tokio::net::TcpStream::connect(address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    closed.await;
}

#[tokio::test]
async fn hostile_input_gets_status_errors_and_the_server_keeps_serving() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let huge = u64::MAX;
    let mut endless = RawWatch::open(
        &fake,
        &format!("/api/v1/namespaces?watch=1&timeoutSeconds={huge}&resourceVersion={huge}"),
    )
    .await;
    fake.break_watches();
    assert_eq!(endless.next_event().await, None);

    let secrets = "/api/v1/namespaces/team-a/secrets";
    let cases: &[(&str, &str, &str, &[u8], u16)] = &[
        (
            "POST",
            secrets,
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\xff",
            400,
        ),
        ("POST", secrets, "application/json", b"[1,2]", 400),
        (
            "POST",
            secrets,
            "application/json",
            br#"{"kind":"Pod","metadata":{"name":"x"}}"#,
            400,
        ),
        (
            "POST",
            secrets,
            "application/json",
            br#"{"metadata":{"name":"x","labels":{"a":1}}}"#,
            400,
        ),
        (
            "POST",
            secrets,
            "application/json",
            br#"{"metadata":{"name":"x"},"data":{"k":"%%"}}"#,
            400,
        ),
        (
            "POST",
            secrets,
            "application/json",
            br#"{"metadata":{"name":"x","resourceVersion":"3"}}"#,
            500,
        ),
        (
            "POST",
            secrets,
            "application/json",
            br#"{"metadata":{"name":"x"},"data":{"bad key":"YQ=="}}"#,
            422,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/team-a",
            "application/merge-patch+json",
            b"{",
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/team-a",
            "application/json-patch+json",
            b"{}",
            400,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/team-a",
            "application/json",
            b"not json",
            400,
        ),
        ("GET", "/api/v1/namespaces/%ff%fe", "", b"", 404),
        (
            "GET",
            "/api/v1/namespaces?labelSelector=%3D%3D",
            "",
            b"",
            400,
        ),
    ];
    for (method, path, content_type, body, expected) in cases {
        let response = send(&fake, method, path, content_type, body).await;
        assert_eq!(
            response.status, *expected,
            "{method} {path} {body:?}: {}",
            response.body
        );
        assert_eq!(response.body["kind"], "Status", "{method} {path}");
        assert_eq!(response.body["code"], *expected, "{method} {path}");
    }
    assert_eq!(get(&fake, "/api/v1/namespaces/team-a").await.status, 200);
}

#[tokio::test]
async fn vault_configs_follow_the_rules_of_a_crd_with_a_status_subresource() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let collection = "/apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs";
    let path = "/apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs/main";
    let status_path = "/apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs/main/status";
    let body = |spec: serde_json::Value| {
        json!({
            "apiVersion": "secrets.iomete.com/v1",
            "kind": "VaultConfig",
            "metadata": { "name": "main", "generation": 7 },
            "spec": spec,
            "status": { "ready": true },
        })
        .to_string()
    };

    let created = send(
        &fake,
        "POST",
        collection,
        "application/json",
        body(json!({ "a": 1 })).as_bytes(),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["apiVersion"], "secrets.iomete.com/v1");
    assert_eq!(
        created.body["metadata"]["generation"], 1,
        "the client's generation is ignored"
    );
    assert_eq!(created.body["metadata"]["namespace"], "team-a");
    assert!(
        created.body.get("status").is_none(),
        "a create drops the status"
    );
    assert_eq!(fake.vault_config("team-a", "main").unwrap(), created.body);

    let again = send(
        &fake,
        "POST",
        collection,
        "application/json",
        body(json!({})).as_bytes(),
    )
    .await;
    assert_eq!(
        (again.status, again.body["message"].as_str()),
        (
            409,
            Some("vaultconfigs.secrets.iomete.com \"main\" already exists")
        )
    );
    assert_eq!(
        again.body["details"],
        json!({ "name": "main", "group": "secrets.iomete.com", "kind": "vaultconfigs" })
    );
    let kindless = send(
        &fake,
        "POST",
        collection,
        "application/json",
        br#"{"metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(kindless.status, 400);
    assert_eq!(
        kindless.body["message"],
        r#"Object 'Kind' is missing in '{"metadata":{"name":"x"}}'"#
    );
    let wrong_version = send(
        &fake,
        "POST",
        collection,
        "application/json",
        br#"{"apiVersion":"v1","kind":"VaultConfig","metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(wrong_version.status, 400);
    let protobuf = send(
        &fake,
        "POST",
        collection,
        "application/vnd.kubernetes.protobuf",
        b"k8s\0",
    )
    .await;
    assert_eq!(
        protobuf.status, 415,
        "custom resources have no protobuf encoding"
    );
    let bad_name = send(
        &fake,
        "POST",
        collection,
        "application/json",
        br#"{"kind":"VaultConfig","metadata":{"name":"Main"}}"#,
    )
    .await;
    assert_eq!(
        (bad_name.status, bad_name.body["details"]["kind"].as_str()),
        (422, Some("VaultConfig"))
    );
    assert!(
        bad_name.body["message"]
            .as_str()
            .unwrap()
            .starts_with("VaultConfig.secrets.iomete.com \"Main\" is invalid: metadata.name"),
        "{}",
        bad_name.body["message"]
    );

    // PUT of /status changes the status and nothing else: not the spec, not the labels.
    let mut status_update = created.body.clone();
    status_update["status"] = json!({ "ready": true });
    status_update["spec"] = json!({ "a": 2 });
    status_update["metadata"]["labels"] = json!({ "x": "y" });
    let status_written = send(
        &fake,
        "PUT",
        status_path,
        "application/json",
        status_update.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status_written.status, 200);
    assert_eq!(status_written.body["status"], json!({ "ready": true }));
    assert_eq!(status_written.body["spec"], json!({ "a": 1 }));
    assert!(status_written.body["metadata"].get("labels").is_none());
    assert_eq!(status_written.body["metadata"]["generation"], 1);
    let got_status = get(&fake, status_path).await;
    assert_eq!(
        got_status.body, status_written.body,
        "GET /status returns the whole object"
    );
    let stale = send(
        &fake,
        "PUT",
        status_path,
        "application/json",
        status_update.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        stale.status, 409,
        "the resourceVersion precondition still applies"
    );

    // PUT of the main resource keeps the stored status; a spec change bumps the generation.
    let mut update = status_written.body.clone();
    update["spec"] = json!({ "a": 2 });
    update["status"] = json!({ "ready": false });
    let updated = send(
        &fake,
        "PUT",
        path,
        "application/json",
        update.to_string().as_bytes(),
    )
    .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["status"], json!({ "ready": true }));
    assert_eq!(updated.body["metadata"]["generation"], 2);

    // Merge and JSON patches work on both; strategic merge patches do not (415).
    let merged = send(
        &fake,
        "PATCH",
        status_path,
        "application/merge-patch+json",
        br#"{"status":{"ready":null,"phase":"Synced"},"spec":{"a":3}}"#,
    )
    .await;
    assert_eq!(merged.status, 200);
    assert_eq!(merged.body["status"], json!({ "phase": "Synced" }));
    assert_eq!(merged.body["spec"], json!({ "a": 2 }));
    assert_eq!(merged.body["metadata"]["generation"], 2);
    let removed = send(
        &fake,
        "PATCH",
        status_path,
        "application/json-patch+json",
        br#"[{"op":"remove","path":"/status"}]"#,
    )
    .await;
    assert_eq!(removed.status, 200);
    assert!(removed.body.get("status").is_none());
    let strategic = send(
        &fake,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        b"{}",
    )
    .await;
    assert_eq!(strategic.status, 415);
    assert_eq!(strategic.body["reason"], "UnsupportedMediaType");

    let status_delete = send(&fake, "DELETE", status_path, "application/json", b"").await;
    assert_eq!(status_delete.status, 405);
    let deleted = send(&fake, "DELETE", path, "application/json", b"").await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        deleted.body["details"],
        json!({
            "name": "main",
            "group": "secrets.iomete.com",
            "kind": "vaultconfigs",
            "uid": created.body["metadata"]["uid"],
        })
    );
    let missing = get(&fake, status_path).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn vault_configs_are_listed_and_watched_like_secrets() {
    let fake = FakeApiServer::start_with(FakeApiServerOptions {
        bookmark_interval: Duration::from_millis(50),
        ..FakeApiServerOptions::default()
    })
    .await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    fake.apply_vault_config("team-b", "b", json!({}));
    let from = fake.apply_vault_config("team-a", "a", json!({}));

    let all = get(&fake, "/apis/secrets.iomete.com/v1/vaultconfigs").await;
    assert_eq!(all.body["kind"], "VaultConfigList");
    assert_eq!(all.body["apiVersion"], "secrets.iomete.com/v1");
    assert_eq!(all.body["metadata"]["resourceVersion"], from.as_str());
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let named = get(
        &fake,
        "/apis/secrets.iomete.com/v1/vaultconfigs?fieldSelector=metadata.name%3Db",
    )
    .await;
    assert_eq!(named.body["items"][0]["metadata"]["namespace"], "team-b");
    let by_spec = get(
        &fake,
        "/apis/secrets.iomete.com/v1/vaultconfigs?fieldSelector=spec.address%3Dx",
    )
    .await;
    assert_eq!(by_spec.status, 400, "no selectable fields beyond metadata");

    let path = format!(
        "/apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs?watch=true&allowWatchBookmarks=true&resourceVersion={from}"
    );
    let mut watch = RawWatch::open(&fake, &path).await;
    fake.apply_vault_config("team-b", "b", json!({ "x": 1 }));
    fake.apply_vault_config_status("team-a", "a", json!({ "ready": true }));
    let event = within("the status change", async {
        loop {
            let event = watch.next_event().await.expect("the watch stays open");
            if event["type"] != "BOOKMARK" {
                return event;
            }
            assert_eq!(event["object"]["apiVersion"], "secrets.iomete.com/v1");
            assert_eq!(event["object"]["kind"], "VaultConfig");
        }
    })
    .await;
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["status"], json!({ "ready": true }));
    assert_eq!(event["object"]["metadata"]["generation"], 1);

    let mut legacy = RawWatch::open(
        &fake,
        "/apis/secrets.iomete.com/v1/watch/namespaces/team-a/vaultconfigs",
    )
    .await;
    assert_eq!(
        legacy.next_type_and_name().await,
        ("ADDED".into(), "a".into())
    );

    fake.compact();
    let mut expired = RawWatch::open(
        &fake,
        &format!("/apis/secrets.iomete.com/v1/vaultconfigs?watch=true&resourceVersion={from}"),
    )
    .await;
    let error = expired.next_event().await.expect("an ERROR event");
    assert_eq!(
        (error["type"].as_str(), &error["object"]["code"]),
        (Some("ERROR"), &json!(410))
    );
}

#[tokio::test]
async fn kubectl_finds_field_validation_in_the_openapi_v3_documents() {
    let fake = FakeApiServer::start().await;
    let root = get(&fake, "/openapi/v3").await;
    let url = root.body["paths"]["apis/secrets.iomete.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("the custom resource group-version is listed");
    let document = get(&fake, url).await;
    assert_eq!(document.status, 200);
    let patch = &document.body["paths"]["/apis/secrets.iomete.com/v1/namespaces/{namespace}/vaultconfigs/{name}"]
        ["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({ "group": "secrets.iomete.com", "version": "v1", "kind": "VaultConfig" })
    );
    assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
}

#[tokio::test]
async fn the_test_controls_write_vault_configs_and_secrets_with_any_valid_key() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let binary: &[u8] = &[0, 159, 146, 150, 255];
    fake.apply_secret(
        "team-a",
        "db",
        &[
            ("config.json", b"{}"),
            ("a-b_c.D9", binary),
            (".dotfile", b""),
        ],
    );
    let secret = fake.secret("team-a", "db").unwrap();
    assert_eq!(
        secret["data"],
        json!({ "config.json": "e30=", "a-b_c.D9": "AJ+Slv8=", ".dotfile": "" })
    );

    let created = fake.apply_vault_config("team-a", "main", json!({ "address": "https://a" }));
    assert_eq!(
        fake.apply_vault_config("team-a", "main", json!({ "address": "https://a" })),
        created,
        "an unchanged spec writes nothing"
    );
    let status_version = fake.apply_vault_config_status("team-a", "main", json!({ "ready": true }));
    assert_ne!(status_version, created);
    fake.apply_vault_config("team-a", "main", json!({ "address": "https://b" }));
    let stored = fake.vault_config("team-a", "main").unwrap();
    assert_eq!(stored["spec"], json!({ "address": "https://b" }));
    assert_eq!(
        stored["status"],
        json!({ "ready": true }),
        "a spec apply keeps the status"
    );
    assert_eq!(stored["metadata"]["generation"], 2);
    assert_eq!(
        get(
            &fake,
            "/apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs/main"
        )
        .await
        .body,
        stored
    );
    assert!(fake.delete_vault_config("team-a", "main"));
    assert!(!fake.delete_vault_config("team-a", "main"));
    assert!(fake.vault_config("team-a", "main").is_none());
}
