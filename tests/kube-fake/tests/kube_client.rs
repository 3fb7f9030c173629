//! kube-rs 5 against the fake: a real `kube::Client` over http://, its typed `Api`, its
//! dynamic `Api<DynamicObject>` for the VaultConfig custom resource (status subresource
//! included), and `kube::runtime::watcher` through creates, updates, deletes, broken watches
//! and 410s.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{client, eventually, within};
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube_fake::FakeApiServer;
use serde_json::json;
use tokio::sync::mpsc;

fn api_status(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|value| value.0.clone())
}

#[tokio::test]
async fn lists_and_gets_what_the_fake_holds() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[("iomete.com/managed", "true")]);
    fake.apply_namespace("team-b", &[]);
    fake.apply_secret("team-a", "db", &[("password", b"hunter2")]);
    let client = client(&fake);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let managed = namespaces
        .list(&ListParams::default().labels("iomete.com/managed=true"))
        .await
        .unwrap();
    assert_eq!(
        managed.metadata.resource_version,
        Some(fake.resource_version())
    );
    let names: Vec<_> = managed
        .items
        .iter()
        .map(|ns| ns.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["team-a"]);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    let db = secrets.get("db").await.unwrap();
    assert_eq!(secret_value(&db, "password"), Some(b"hunter2".to_vec()));
    assert_eq!(db.type_.as_deref(), Some("Opaque"));
    assert!(db.metadata.uid.is_some() && db.metadata.creation_timestamp.is_some());

    let everywhere: Api<Secret> = Api::all(client);
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn a_missing_object_is_an_api_error_with_code_404() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let secrets: Api<Secret> = Api::namespaced(client(&fake), "team-a");
    let (code, reason, message) = api_status(secrets.get("missing").await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (404, "NotFound", "secrets \"missing\" not found")
    );
    assert!(secrets.get_opt("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn creates_replaces_patches_and_deletes_with_real_semantics() {
    let fake = FakeApiServer::start().await;
    let client = client(&fake);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some("team-a".into());
    let created = namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    let mut secret = Secret::default();
    secret.metadata.name = Some("db".into());
    secret.string_data = Some(BTreeMap::from([("user".into(), "admin".into())]));
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(secret_value(&created, "user"), Some(b"admin".to_vec()));
    assert_eq!(created.string_data, None);

    let (code, reason, _) = api_status(
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut replacement = created.clone();
    replacement.data = Some(BTreeMap::from([(
        "user".into(),
        ByteString(b"root".to_vec()),
    )]));
    let replaced = secrets
        .replace("db", &PostParams::default(), &replacement)
        .await
        .unwrap();
    assert_eq!(secret_value(&replaced, "user"), Some(b"root".to_vec()));
    let (code, reason, _) = api_status(
        secrets
            .replace("db", &PostParams::default(), &replacement)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "the second replace carries a stale resourceVersion"
    );

    let patch = Patch::Merge(json!({ "metadata": { "labels": { "app": "web" } } }));
    let patched = secrets
        .patch("db", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["app"], "web");
    let patch = Patch::Strategic(json!({ "stringData": { "extra": "x" } }));
    let patched = secrets
        .patch("db", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(secret_value(&patched, "extra"), Some(b"x".to_vec()));

    let deleted = secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        deleted.is_right(),
        "a deleted secret is answered with a Status"
    );
    assert!(fake.secret("team-a", "db").is_none());

    let elsewhere: Api<Secret> = Api::namespaced(client, "nope");
    let (code, _, message) = api_status(
        elsewhere
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_yields_a_410_error_event() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_secret("team-a", "db", &[]);
    fake.compact();
    let secrets: Api<Secret> = Api::namespaced(client(&fake), "team-a");
    let mut stream = secrets
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match within("the error event", stream.next()).await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        within("the end of the watch", stream.next())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn kubes_default_client_retries_503_until_the_server_is_back() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.set_unavailable(true);
    let namespaces: Api<Namespace> = Api::all(client(&fake));
    let list = tokio::spawn(async move { namespaces.list(&ListParams::default()).await });
    eventually("a few refused attempts", || fake.requests().len() >= 3).await;
    fake.set_unavailable(false);
    let listed = within("the retried list", list).await.unwrap().unwrap();
    assert_eq!(listed.items.len(), 1);
}

/// A short fixed delay between watcher retries, so recoveries take milliseconds.
struct QuickRetry;

impl Iterator for QuickRetry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(20))
    }
}

impl Backoff for QuickRetry {
    fn reset(&mut self) {}
}

type WatcherItem = Result<Event<Secret>, watcher::Error>;

/// Runs a watcher over the secrets of `namespace`, forwarding what it yields.
fn spawn_watcher(fake: &FakeApiServer, namespace: &str) -> mpsc::UnboundedReceiver<WatcherItem> {
    let api: Api<Secret> = Api::namespaced(client(fake), namespace);
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .backoff(QuickRetry)
            .boxed();
        while let Some(item) = stream.next().await {
            if sender.send(item).is_err() {
                return;
            }
        }
    });
    receiver
}

async fn next_item(events: &mut mpsc::UnboundedReceiver<WatcherItem>) -> WatcherItem {
    within("the next watcher event", events.recv())
        .await
        .expect("the watcher keeps running")
}

/// A short description of a watcher event: `Init`, `InitApply db=1`, `Apply db=2`, ...
fn describe(event: &Event<Secret>) -> String {
    let object = |secret: &Secret| {
        let value = secret_value(secret, "v").map(|v| String::from_utf8(v).unwrap());
        format!(
            "{}={}",
            secret.metadata.name.as_deref().unwrap_or_default(),
            value.unwrap_or_default()
        )
    };
    match event {
        Event::Init => "Init".into(),
        Event::InitApply(secret) => format!("InitApply {}", object(secret)),
        Event::InitDone => "InitDone".into(),
        Event::Apply(secret) => format!("Apply {}", object(secret)),
        Event::Delete(secret) => format!("Delete {}", object(secret)),
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<WatcherItem>) -> String {
    describe(&next_item(events).await.expect("no watcher error"))
}

/// The secrets a consumer of the watcher's events would hold, by name and value.
#[derive(Default)]
struct Mirror {
    current: BTreeMap<String, String>,
    relisting: BTreeMap<String, String>,
}

impl Mirror {
    fn apply(&mut self, event: &Event<Secret>) {
        let entry = |secret: &Secret| {
            let value = secret_value(secret, "v").map(|v| String::from_utf8(v).unwrap());
            (
                secret.metadata.name.clone().unwrap(),
                value.unwrap_or_default(),
            )
        };
        match event {
            Event::Init => self.relisting.clear(),
            Event::InitApply(secret) => {
                let (name, value) = entry(secret);
                self.relisting.insert(name, value);
            }
            Event::InitDone => self.current = std::mem::take(&mut self.relisting),
            Event::Apply(secret) => {
                let (name, value) = entry(secret);
                self.current.insert(name, value);
            }
            Event::Delete(secret) => {
                self.current.remove(&entry(secret).0);
            }
        }
    }
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

#[tokio::test]
async fn the_watcher_sees_creates_updates_and_deletes_in_order() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    fake.apply_secret("team-a", "existing", &[("v", b"0")]);
    let mut events = spawn_watcher(&fake, "team-a");
    for expected in ["Init", "InitApply existing=0", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    eventually("the watch to be established", || fake.open_watches() == 1).await;

    fake.apply_secret("team-a", "db", &[("v", b"1")]);
    fake.apply_secret("team-b", "elsewhere", &[("v", b"1")]);
    fake.apply_secret("team-a", "db", &[("v", b"2")]);
    fake.delete_secret("team-a", "existing");
    fake.delete_secret("team-a", "db");
    for expected in [
        "Apply db=1",
        "Apply db=2",
        "Delete existing=0",
        "Delete db=2",
    ] {
        assert_eq!(next_event(&mut events).await, expected);
    }
}

#[tokio::test]
async fn the_watcher_resumes_without_loss_or_relist_after_break_watches() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_secret("team-a", "db", &[("v", b"1")]);
    let mut events = spawn_watcher(&fake, "team-a");
    for expected in ["Init", "InitApply db=1", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    eventually("the watch to be established", || fake.open_watches() == 1).await;
    let version_seen = fake.resource_version();
    fake.clear_requests();

    fake.break_watches();
    fake.apply_secret("team-a", "db", &[("v", b"2")]);
    fake.apply_secret("team-a", "cache", &[("v", b"1")]);
    fake.delete_secret("team-a", "db");
    for expected in ["Apply db=2", "Apply cache=1", "Delete db=2"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|request| request.contains("watch=true")),
        "no relist: {requests:?}"
    );
    assert!(
        requests[0].ends_with(&format!("resourceVersion={version_seen}")),
        "the watch resumed where it was: {requests:?}"
    );
}

#[tokio::test]
async fn the_watcher_relists_after_410_and_converges() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_secret("team-a", "keep", &[("v", b"1")]);
    fake.apply_secret("team-a", "gone", &[("v", b"1")]);
    let mut events = spawn_watcher(&fake, "team-a");
    let mut mirror = Mirror::default();
    loop {
        let event = next_item(&mut events).await.expect("no watcher error");
        mirror.apply(&event);
        if matches!(event, Event::InitDone) {
            break;
        }
    }
    eventually("the watch to be established", || fake.open_watches() == 1).await;
    fake.clear_requests();

    // Cut the watch and keep the watcher out while changes happen and the history it would
    // need is compacted away, as when a client is partitioned for longer than etcd keeps
    // history.
    fake.set_unavailable(true);
    fake.break_watches();
    eventually("the watcher to try again", || !fake.requests().is_empty()).await;
    fake.delete_secret("team-a", "gone");
    fake.apply_secret("team-a", "keep", &[("v", b"2")]);
    fake.apply_secret("team-a", "new", &[("v", b"1")]);
    fake.compact();
    fake.set_unavailable(false);

    let mut saw_expired = false;
    while !(saw_expired && mirror.current == expected(&[("keep", "2"), ("new", "1")])) {
        match next_item(&mut events).await {
            Ok(event) => mirror.apply(&event),
            Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_expired = true,
            Err(other) => panic!("unexpected watcher error {other:?}"),
        }
    }
    let lists = fake
        .requests()
        .into_iter()
        .filter(|request| request.starts_with("GET ") && !request.contains("watch=true"))
        .count();
    assert_eq!(lists, 1, "exactly one relist: {:?}", fake.requests());
}

#[tokio::test]
async fn the_watcher_lists_then_watches_with_these_exact_parameters() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let mut events = spawn_watcher(&fake, "team-a");
    for expected in ["Init", "InitDone"] {
        assert_eq!(next_event(&mut events).await, expected);
    }
    eventually("the watch to be established", || fake.open_watches() == 1).await;
    // kube 5's watcher: one page-sized list (the fake ignores `limit`), then a watch from
    // the list's resourceVersion with a 290 s server-side timeout and bookmarks on.
    assert_eq!(
        fake.requests(),
        [
            "GET /api/v1/namespaces/team-a/secrets?&limit=500",
            "GET /api/v1/namespaces/team-a/secrets?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=1",
        ]
    );
}

#[tokio::test]
async fn the_written_kubeconfig_gives_a_working_kube_client() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let directory = tempfile::tempdir().unwrap();
    let path = fake.write_kubeconfig(directory.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", fake.url()));
    let namespaces: Api<Namespace> = Api::all(kube::Client::try_from(config).unwrap());
    assert_eq!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

/// The VaultConfig resource as kube-rs addresses a custom resource it has no Rust type for.
fn vault_config_resource() -> ApiResource {
    ApiResource {
        group: "secrets.iomete.com".into(),
        version: "v1".into(),
        api_version: "secrets.iomete.com/v1".into(),
        kind: "VaultConfig".into(),
        plural: "vaultconfigs".into(),
    }
}

fn vault_configs(fake: &FakeApiServer, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client(fake), namespace, &vault_config_resource())
}

fn vault_config(name: &str, spec: serde_json::Value) -> DynamicObject {
    DynamicObject::new(name, &vault_config_resource()).data(json!({ "spec": spec }))
}

fn generation(object: &DynamicObject) -> i64 {
    object
        .metadata
        .generation
        .expect("custom resources carry a generation")
}

#[tokio::test]
async fn vault_configs_are_created_read_listed_and_deleted_through_kube() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_namespace("team-b", &[]);
    let api = vault_configs(&fake, "team-a");

    let mut body = vault_config("main", json!({ "address": "https://vault:8200" }));
    body.data["status"] = json!({ "ready": true });
    let created = api.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(generation(&created), 1);
    assert_eq!(created.data["spec"]["address"], "https://vault:8200");
    assert!(
        created.data.get("status").is_none(),
        "a create cannot set the status"
    );
    assert_eq!(
        created.types.as_ref().map(|t| t.api_version.as_str()),
        Some("secrets.iomete.com/v1")
    );
    let (code, reason, _) =
        api_status(api.create(&PostParams::default(), &body).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    fake.apply_vault_config("team-b", "other", json!({}));
    let everywhere: Api<DynamicObject> = Api::all_with(client(&fake), &vault_config_resource());
    let listed = everywhere.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|item| item.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["main", "other"]);
    let selected = everywhere
        .list(&ListParams::default().fields("metadata.namespace=team-b"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);

    let (code, _, message) = api_status(api.get("missing").await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (404, "vaultconfigs.secrets.iomete.com \"missing\" not found")
    );
    let elsewhere = vault_configs(&fake, "nope");
    let (code, _, message) = api_status(
        elsewhere
            .create(&PostParams::default(), &vault_config("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (404, "namespaces \"nope\" not found")
    );
    let (code, _, _) = api_status(
        api.create(&PostParams::default(), &vault_config("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);

    let deleted = api.delete("main", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "answered with a Status");
    assert!(fake.vault_config("team-a", "main").is_none());
    fake.delete_namespace("team-b");
    assert!(
        fake.vault_config("team-b", "other").is_none(),
        "deleting a namespace deletes its VaultConfigs"
    );
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    let api = vault_configs(&fake, "team-a");
    fake.apply_vault_config("team-a", "main", json!({ "address": "https://a" }));

    // A merge patch of /status changes the status only: the spec in it is ignored and the
    // generation stays.
    let patch = Patch::Merge(json!({
        "spec": { "address": "https://ignored" },
        "status": { "ready": true, "observedGeneration": 1 },
    }));
    let patched = api
        .patch_status("main", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["ready"], true);
    assert_eq!(patched.data["spec"]["address"], "https://a");
    assert_eq!(generation(&patched), 1);
    assert_eq!(
        fake.vault_config("team-a", "main").unwrap()["status"]["ready"],
        true
    );
    let fetched = api.get_status("main").await.unwrap();
    assert_eq!(fetched.data["status"]["observedGeneration"], 1);

    // A write of the main resource keeps the stored status, whatever the body says.
    let mut replacement = patched.clone();
    replacement.data["status"] = json!({ "ready": false });
    let unchanged = api
        .replace("main", &PostParams::default(), &replacement)
        .await
        .unwrap();
    assert_eq!(unchanged.data["status"]["ready"], true);
    assert_eq!(
        unchanged.metadata.resource_version, patched.metadata.resource_version,
        "a write that changes only the status of the main resource is a no-op"
    );

    // A spec change bumps the generation; a metadata change does not.
    let respecced = api
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "address": "https://b" } })),
        )
        .await
        .unwrap();
    assert_eq!(generation(&respecced), 2);
    assert_eq!(respecced.data["status"]["ready"], true);
    let labelled = api
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "a": "b" } } })),
        )
        .await
        .unwrap();
    assert_eq!(generation(&labelled), 2);
    let json_patched = api
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    { "op": "add", "path": "/spec/role", "value": "reader" }
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(generation(&json_patched), 3);

    // A status write with a stale resourceVersion conflicts, and never changes the spec
    // or the labels.
    let mut stale = patched.clone();
    stale.data["status"] = json!({ "ready": false });
    let (code, reason, _) = api_status(
        api.replace_status("main", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let mut current = json_patched.clone();
    current.data["status"] = json!({ "ready": false });
    current.data["spec"] = json!({ "address": "https://ignored" });
    current.metadata.labels = None;
    let status_written = api
        .replace_status("main", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(status_written.data["status"], json!({ "ready": false }));
    assert_eq!(status_written.data["spec"], json_patched.data["spec"]);
    assert_eq!(status_written.metadata.labels, json_patched.metadata.labels);
    assert_eq!(generation(&status_written), 3);

    // Custom resources have no strategic merge patch, on the real server as here.
    let (code, reason, _) = api_status(
        api.patch(
            "main",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "spec": {} })),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn the_watcher_follows_vault_configs_and_their_status() {
    let fake = FakeApiServer::start().await;
    fake.apply_namespace("team-a", &[]);
    fake.apply_vault_config("team-a", "existing", json!({ "v": 0 }));
    let api = vault_configs(&fake, "team-a");
    let (sender, mut events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .backoff(QuickRetry)
            .boxed();
        while let Some(item) = stream.next().await {
            if sender.send(item).is_err() {
                return;
            }
        }
    });
    let mut next = async || -> String {
        let event = within("the next watcher event", events.recv())
            .await
            .expect("the watcher keeps running")
            .expect("no watcher error");
        let describe = |object: &DynamicObject| {
            format!(
                "{} gen={} status={}",
                object.metadata.name.as_deref().unwrap_or_default(),
                generation(object),
                object.data.get("status").unwrap_or(&json!(null))
            )
        };
        match event {
            Event::Init => "Init".into(),
            Event::InitApply(object) => format!("InitApply {}", describe(&object)),
            Event::InitDone => "InitDone".into(),
            Event::Apply(object) => format!("Apply {}", describe(&object)),
            Event::Delete(object) => format!("Delete {}", describe(&object)),
        }
    };
    for expected in ["Init", "InitApply existing gen=1 status=null", "InitDone"] {
        assert_eq!(next().await, expected);
    }
    eventually("the watch to be established", || fake.open_watches() == 1).await;

    fake.apply_vault_config("team-a", "main", json!({ "v": 1 }));
    fake.apply_vault_config_status("team-a", "main", json!({ "ready": true }));
    fake.apply_vault_config("team-a", "main", json!({ "v": 2 }));
    // Neither writes: the spec and the status are what is stored already.
    fake.apply_vault_config("team-a", "main", json!({ "v": 2 }));
    fake.apply_vault_config_status("team-a", "main", json!({ "ready": true }));
    fake.break_watches();
    fake.delete_vault_config("team-a", "existing");
    for expected in [
        "Apply main gen=1 status=null",
        r#"Apply main gen=1 status={"ready":true}"#,
        r#"Apply main gen=2 status={"ready":true}"#,
        "Delete existing gen=1 status=null",
    ] {
        assert_eq!(next().await, expected);
    }
    let watches: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|request| request.contains("watch=true"))
        .collect();
    assert!(
        watches.iter().all(|request| request
            .starts_with("GET /apis/secrets.iomete.com/v1/namespaces/team-a/vaultconfigs?")),
        "{watches:?}"
    );
}
