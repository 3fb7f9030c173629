//! The fake's etcd: every stored object, the single global resourceVersion counter, and
//! the history of changes that watches replay from.
//!
//! All writes, from HTTP or from the test controls, go through [`Store`] while its mutex is
//! held, so each write gets the next resourceVersion, is recorded in the history and is
//! broadcast to open watches in exactly that order. A watch subscribes under the same lock,
//! which makes "replay the history, then follow the broadcast" free of gaps and duplicates.
//! The history is kept from the compaction point on; [`Store::compact`] drops it, and a
//! watch that asks to resume from before the compaction point gets 410 Expired, like a
//! real server whose etcd has been compacted.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::object;
use crate::resource::{ResourceKind, Subresource, apply_status_write};
use crate::selector::ObjectFilter;
use crate::status::{ApiError, deleted_status};

/// How many changes a watch may fall behind before it is ended (it then resumes from its
/// last resourceVersion, so nothing is lost).
const BROADCAST_CAPACITY: usize = 4096;

/// Metadata fields only the server sets; whatever a client sends for them is dropped.
const SERVER_OWNED_METADATA: &[&str] = &[
    "selfLink",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: ResourceKind,
    /// Empty for cluster-scoped objects (namespaces).
    namespace: String,
    name: String,
}

impl ObjectKey {
    fn new(kind: ResourceKind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write: what a watch turns into ADDED/MODIFIED/DELETED events.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) resource_version: u64,
    pub(crate) change_type: ChangeType,
    pub(crate) kind: ResourceKind,
    /// The object before a modification (needed to tell when it starts or stops matching
    /// a watch's selectors).
    pub(crate) previous: Option<Value>,
    /// The object after the write; for a deletion, its last state stamped with the
    /// deletion's resourceVersion, as the real server sends it.
    pub(crate) current: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`, applied as a merge patch (see crate docs).
    StrategicMerge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Default)]
pub(crate) struct Preconditions {
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
}

/// What a new watch needs: the events to send first, then the live feed after them.
pub(crate) struct Subscription {
    pub(crate) replay: Vec<Arc<Change>>,
    pub(crate) live: broadcast::Receiver<Arc<Change>>,
    /// The resourceVersion the watch is up to once `replay` is sent.
    pub(crate) resource_version: u64,
}

pub(crate) struct Store {
    last_resource_version: u64,
    /// Watches resuming from a resourceVersion below this get 410 Expired.
    compacted_through: u64,
    objects: BTreeMap<ObjectKey, Value>,
    /// Every change after `compacted_through`, oldest first.
    history: VecDeque<Arc<Change>>,
    changes: broadcast::Sender<Arc<Change>>,
    ids: IdGenerator,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            last_resource_version: 0,
            compacted_through: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            changes: broadcast::channel(BROADCAST_CAPACITY).0,
            ids: IdGenerator::new(),
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.last_resource_version
    }

    pub(crate) fn find(&self, kind: ResourceKind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&ObjectKey::new(kind, namespace, name))
    }

    pub(crate) fn get(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.find(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// A `<Kind>List` of the matching objects, ordered by namespace then name (etcd key
    /// order), carrying the current resourceVersion. `limit` is not honoured: everything
    /// is returned in one page, which clients must accept from any server.
    pub(crate) fn list(&self, filter: &ObjectFilter) -> Value {
        let kind = filter.kind();
        let items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|(key, object)| key.kind == kind && filter.matches(object))
            .map(|(_, object)| object)
            .collect();
        json!({
            "kind": kind.list_kind(),
            "apiVersion": kind.api_version(),
            "metadata": { "resourceVersion": self.last_resource_version.to_string() },
            "items": items,
        })
    }

    pub(crate) fn create(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut object = decode(kind, namespace, body)?;
        let metadata = metadata_of(&mut object);
        if metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = self.choose_name(kind, namespace, metadata)?;
        kind.validate_name(&name)?;
        if kind.is_namespaced() && self.find(ResourceKind::Namespace, "", namespace).is_none() {
            return Err(ApiError::not_found(ResourceKind::Namespace, namespace));
        }
        let key = ObjectKey::new(kind, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind, &name));
        }
        metadata.insert("name".into(), json!(name));
        metadata.insert("uid".into(), json!(self.ids.uid()));
        metadata.insert("creationTimestamp".into(), json!(object::now_timestamp()));
        kind.prepare_for_create(&mut object)?;
        Ok(self.commit(key, ChangeType::Added, None, Value::Object(object)))
    }

    /// A PUT: replaces the object (or, with `Some(Subresource::Status)`, just its
    /// `.status`), after the optimistic-concurrency check when the body carries a
    /// resourceVersion. An update that changes nothing is a no-op, as on the real server: no
    /// new resourceVersion, no watch event.
    pub(crate) fn update(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut object = decode(kind, namespace, body)?;
        let metadata = metadata_of(&mut object);
        match metadata.get("name").and_then(Value::as_str) {
            None | Some("") => {
                metadata.insert("name".into(), json!(name));
            }
            Some(body_name) if body_name == name => {}
            Some(body_name) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let key = ObjectKey::new(kind, namespace, name);
        let Some(existing) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(kind, name));
        };
        let requested_version = metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !requested_version.is_empty() && requested_version != object::resource_version(&existing)
        {
            return Err(ApiError::stale_resource_version(kind, name));
        }
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            if let Some(value) = existing["metadata"].get(field) {
                metadata.insert(field.into(), value.clone());
            }
        }
        let object = match subresource {
            None => {
                kind.prepare_for_update(&mut object, &existing)?;
                Value::Object(object)
            }
            Some(Subresource::Status) => apply_status_write(&object, &existing),
        };
        if object == existing {
            return Ok(existing);
        }
        Ok(self.commit(key, ChangeType::Modified, Some(existing), object))
    }

    /// A PATCH: the patch is applied to the stored object and the result goes through
    /// [`Store::update`], so a patch that sets a stale resourceVersion conflicts, and a
    /// patch of `/status` changes only the status.
    pub(crate) fn patch(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        patch_type: PatchType,
        patch: &[u8],
    ) -> Result<Value, ApiError> {
        let mut document = self.get(kind, namespace, name)?;
        let unparsable = |error: serde_json::Error| {
            ApiError::bad_request(format!("error decoding patch: {error}"))
        };
        match patch_type {
            PatchType::Merge | PatchType::StrategicMerge => {
                let mut patch: Value = serde_json::from_slice(patch).map_err(unparsable)?;
                if patch_type == PatchType::StrategicMerge {
                    strip_strategic_merge_directives(&mut patch);
                }
                json_patch::merge(&mut document, &patch);
            }
            PatchType::Json => {
                let operations: json_patch::Patch =
                    serde_json::from_slice(patch).map_err(unparsable)?;
                json_patch::patch(&mut document, &operations.0).map_err(|error| {
                    ApiError::unprocessable(format!("the JSON patch could not be applied: {error}"))
                })?;
            }
        }
        self.update(kind, namespace, name, subresource, document)
    }

    /// Deletes at once (no finalizers, no grace period) and returns the `Status` body of
    /// the response. Deleting a namespace first deletes every object in it.
    pub(crate) fn delete(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Value, ApiError> {
        let key = ObjectKey::new(kind, namespace, name);
        let Some(existing) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(kind, name));
        };
        let (uid, version) = (object::uid(&existing), object::resource_version(&existing));
        if let Some(required) = preconditions.uid.as_deref().filter(|&u| u != uid) {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {required}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(required) = preconditions
            .resource_version
            .as_deref()
            .filter(|&v| v != version)
        {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {required}, ResourceVersion in object meta: {version}"
                ),
            ));
        }
        if kind == ResourceKind::Namespace {
            let contents: Vec<ObjectKey> = self
                .objects
                .keys()
                .filter(|key| key.kind.is_namespaced() && key.namespace == name)
                .cloned()
                .collect();
            for content_key in contents {
                if let Some(content) = self.objects.get(&content_key).cloned() {
                    self.commit(content_key, ChangeType::Deleted, None, content);
                }
            }
        }
        let status = deleted_status(kind, name, object::uid(&existing));
        self.commit(key, ChangeType::Deleted, None, existing);
        Ok(status)
    }

    /// Starts a watch of `kind`. With `since`, replays the changes after it (410 Expired
    /// when they have been compacted away); without, replays the current objects as
    /// ADDED, as the real server does for a watch without resourceVersion or with "0".
    pub(crate) fn subscribe(
        &self,
        kind: ResourceKind,
        since: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let replay = match since {
            Some(since) if since < self.compacted_through => {
                return Err(ApiError::expired(since, self.compacted_through));
            }
            Some(since) => self
                .history
                .iter()
                .filter(|change| change.kind == kind && change.resource_version > since)
                .cloned()
                .collect(),
            None => self
                .objects
                .iter()
                .filter(|(key, _)| key.kind == kind)
                .map(|(_, object)| {
                    Arc::new(Change {
                        resource_version: object::resource_version(object).parse().unwrap_or(0),
                        change_type: ChangeType::Added,
                        kind,
                        previous: None,
                        current: object.clone(),
                    })
                })
                .collect(),
        };
        Ok(Subscription {
            replay,
            live: self.changes.subscribe(),
            resource_version: self.last_resource_version,
        })
    }

    /// Forgets the history up to now: only watches from the current resourceVersion on
    /// can resume; older ones get 410 Expired and must relist.
    pub(crate) fn compact(&mut self) {
        self.compacted_through = self.last_resource_version;
        self.history.clear();
    }

    fn choose_name(
        &mut self,
        kind: ResourceKind,
        namespace: &str,
        metadata: &Map<String, Value>,
    ) -> Result<String, ApiError> {
        let text = |field: &str| {
            metadata
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (name, generate_name) = (text("name"), text("generateName"));
        if !name.is_empty() {
            return Ok(name);
        }
        if generate_name.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        loop {
            let candidate = format!("{generate_name}{}", self.ids.name_suffix());
            if self.find(kind, namespace, &candidate).is_none() {
                return Ok(candidate);
            }
        }
    }

    /// Assigns the next resourceVersion to the write, stores it, records it in the history
    /// and tells every open watch. Returns the object as stored.
    fn commit(
        &mut self,
        key: ObjectKey,
        change_type: ChangeType,
        previous: Option<Value>,
        mut current: Value,
    ) -> Value {
        self.last_resource_version += 1;
        object::set_resource_version(&mut current, self.last_resource_version);
        if change_type == ChangeType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), current.clone());
        }
        let change = Arc::new(Change {
            resource_version: self.last_resource_version,
            change_type,
            kind: key.kind,
            previous,
            current: current.clone(),
        });
        self.history.push_back(Arc::clone(&change));
        // An error only means no watch is open right now; later ones replay the history.
        let _ = self.changes.send(change);
        current
    }
}

fn metadata_of(object: &mut Map<String, Value>) -> &mut Map<String, Value> {
    match object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(metadata) => metadata,
        _ => unreachable!("decode() leaves a metadata map on every object"),
    }
}

/// Checks a request body and brings the parts every object shares into stored form: type
/// meta, a metadata map without server-owned fields, and the namespace from the URL.
fn decode(
    kind: ResourceKind,
    namespace: &str,
    body: Value,
) -> Result<Map<String, Value>, ApiError> {
    let undecodable = |why: &str| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {why}",
            kind.kind(),
            kind.version(),
            kind.kind()
        ))
    };
    let Value::Object(mut object) = body else {
        return Err(undecodable("the body must be a JSON object"));
    };
    // The apiextensions server decodes custom resources as unstructured objects, which
    // must name their kind; built-in types take it from the URL.
    if kind.is_custom_resource()
        && object
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            Value::Object(object)
        )));
    }
    for (field, expected) in [("kind", kind.kind()), ("apiVersion", kind.api_version())] {
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(given)) if given.is_empty() || given == expected => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "the body's {field} is {given}, but this URL serves {expected:?}"
                )));
            }
        }
    }
    object.insert("kind".into(), json!(kind.kind()));
    object.insert("apiVersion".into(), json!(kind.api_version()));
    let mut metadata = match object.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err(undecodable("metadata must be an object")),
    };
    // Go's `omitempty`: null and empty-string metadata fields are the same as absent ones.
    metadata.retain(|field, value| {
        !value.is_null() && value != "" && !SERVER_OWNED_METADATA.contains(&field.as_str())
    });
    for field in [
        "name",
        "generateName",
        "namespace",
        "resourceVersion",
        "uid",
    ] {
        if metadata.get(field).is_some_and(|value| !value.is_string()) {
            return Err(undecodable(&format!("metadata.{field} must be a string")));
        }
    }
    for field in ["labels", "annotations"] {
        match metadata.get(field) {
            None => {}
            // Go's `omitempty`: an empty map is not stored.
            Some(Value::Object(map)) if map.is_empty() => {
                metadata.remove(field);
            }
            Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
            Some(_) => {
                return Err(undecodable(&format!(
                    "metadata.{field} must be a map of strings"
                )));
            }
        }
    }
    if kind.is_namespaced() {
        match metadata.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                metadata.insert("namespace".into(), json!(namespace));
            }
            Some(given) if given == namespace => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        // The real server silently clears a namespace given for a cluster-scoped object.
        metadata.remove("namespace");
    }
    object.insert("metadata".into(), Value::Object(metadata));
    object.retain(|_, value| !value.is_null());
    Ok(object)
}

/// Drops strategic-merge-patch directives (`$patch`, `$setElementOrder/...`,
/// `$retainKeys`, `$deleteFromPrimitiveList/...`) so the rest applies as a merge patch.
fn strip_strategic_merge_directives(patch: &mut Value) {
    if let Value::Object(map) = patch {
        map.retain(|key, _| !key.starts_with('$'));
        map.values_mut().for_each(strip_strategic_merge_directives);
    }
}

/// Unique ids and generateName suffixes, random per fake but cheap and dependency-free.
struct IdGenerator {
    seed: RandomState,
    counter: u64,
}

impl IdGenerator {
    fn new() -> Self {
        Self {
            seed: RandomState::new(),
            counter: 0,
        }
    }

    fn next_random(&mut self) -> u64 {
        self.counter += 1;
        self.seed.hash_one(self.counter)
    }

    /// A random (version 4 shaped) UUID string.
    fn uid(&mut self) -> String {
        let (high, low) = (self.next_random(), self.next_random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xfff,
            0x8000 | ((low >> 48) & 0x3fff),
            low & 0xffff_ffff_ffff
        )
    }

    /// Five characters from the alphabet the real server uses for generateName.
    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut random = self.next_random();
        (0..5)
            .map(|_| {
                let index = (random % ALPHABET.len() as u64) as usize;
                random /= ALPHABET.len() as u64;
                char::from(ALPHABET[index])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_namespace(name: &str) -> Store {
        let mut store = Store::new();
        store
            .create(
                ResourceKind::Namespace,
                "",
                json!({ "metadata": { "name": name } }),
            )
            .unwrap();
        store
    }

    fn secret(name: &str, value: &str) -> Value {
        json!({ "metadata": { "name": name }, "stringData": { "k": value } })
    }

    #[test]
    fn every_write_takes_the_next_resource_version() {
        let mut store = store_with_namespace("ns");
        let created = store
            .create(ResourceKind::Secret, "ns", secret("s", "1"))
            .unwrap();
        assert_eq!(object::resource_version(&created), "2");
        let updated = store
            .update(ResourceKind::Secret, "ns", "s", None, secret("s", "2"))
            .unwrap();
        assert_eq!(object::resource_version(&updated), "3");
        assert_eq!(object::uid(&updated), object::uid(&created));
        store
            .delete(ResourceKind::Secret, "ns", "s", &Preconditions::default())
            .unwrap();
        assert_eq!(store.resource_version(), 4);
    }

    #[test]
    fn an_update_that_changes_nothing_writes_nothing() {
        let mut store = store_with_namespace("ns");
        store
            .create(ResourceKind::Secret, "ns", secret("s", "1"))
            .unwrap();
        let unchanged = store
            .update(ResourceKind::Secret, "ns", "s", None, secret("s", "1"))
            .unwrap();
        assert_eq!(object::resource_version(&unchanged), "2");
        assert_eq!(store.resource_version(), 2);
    }

    #[test]
    fn stale_resource_versions_conflict() {
        let mut store = store_with_namespace("ns");
        store
            .create(ResourceKind::Secret, "ns", secret("s", "1"))
            .unwrap();
        store
            .update(ResourceKind::Secret, "ns", "s", None, secret("s", "2"))
            .unwrap();
        let mut stale = secret("s", "3");
        stale["metadata"]["resourceVersion"] = json!("2");
        let error = store
            .update(ResourceKind::Secret, "ns", "s", None, stale)
            .unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
    }

    #[test]
    fn secrets_need_an_existing_namespace() {
        let mut store = Store::new();
        let error = store
            .create(ResourceKind::Secret, "nope", secret("s", "1"))
            .unwrap_err();
        assert_eq!(error.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn generate_name_gets_a_random_suffix() {
        let mut store = store_with_namespace("ns");
        let body = json!({ "metadata": { "generateName": "token-" } });
        let created = store.create(ResourceKind::Secret, "ns", body).unwrap();
        let name = object::name(&created);
        assert!(
            name.starts_with("token-") && name.len() == "token-".len() + 5,
            "{name}"
        );
    }

    #[test]
    fn deleting_a_namespace_deletes_its_secrets_first() {
        let mut store = store_with_namespace("ns");
        store
            .create(ResourceKind::Secret, "ns", secret("s", "1"))
            .unwrap();
        let subscription = store.subscribe(ResourceKind::Secret, Some(2)).unwrap();
        assert!(subscription.replay.is_empty());
        let mut live = subscription.live;
        store
            .delete(ResourceKind::Namespace, "", "ns", &Preconditions::default())
            .unwrap();
        let first = live.try_recv().unwrap();
        assert_eq!(
            (first.kind, first.change_type),
            (ResourceKind::Secret, ChangeType::Deleted)
        );
        assert_eq!(object::resource_version(&first.current), "3");
        assert_eq!(live.try_recv().unwrap().kind, ResourceKind::Namespace);
        assert!(store.find(ResourceKind::Secret, "ns", "s").is_none());
    }

    #[test]
    fn watches_from_before_the_compaction_point_expire() {
        let mut store = store_with_namespace("ns");
        store
            .create(ResourceKind::Secret, "ns", secret("s", "1"))
            .unwrap();
        assert_eq!(
            store
                .subscribe(ResourceKind::Secret, Some(1))
                .unwrap()
                .replay
                .len(),
            1
        );
        store.compact();
        let error = store
            .subscribe(ResourceKind::Secret, Some(1))
            .err()
            .unwrap();
        assert_eq!((error.code, error.reason), (410, "Expired"));
        assert!(store.subscribe(ResourceKind::Secret, Some(2)).is_ok());
    }

    #[test]
    fn strategic_merge_directives_are_ignored() {
        let mut store = store_with_namespace("ns");
        let patch = br#"{"metadata":{"labels":{"a":"b"},"$setElementOrder/finalizers":[]}}"#;
        let patched = store
            .patch(
                ResourceKind::Namespace,
                "",
                "ns",
                None,
                PatchType::StrategicMerge,
                patch,
            )
            .unwrap();
        assert_eq!(object::label(&patched, "a"), Some("b"));
        assert!(
            patched["metadata"]
                .get("$setElementOrder/finalizers")
                .is_none()
        );
    }
}
