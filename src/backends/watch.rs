//! Following a resource into a local cache, and knowing whether that cache is current.
//!
//! A cache fed by a watch is current once a listing has completed and for as long as the watch
//! keeps delivering. When the watch fails (the API server restarts, answers 410 Gone, or cannot
//! be reached) the events it missed are unknown, so the cache is marked stale at once and the
//! watch is rebuilt from a fresh LIST; the reflector swaps the new listing in whole when it
//! completes, and only then is the cache current again. Callers refuse decisions (503, retriable)
//! that need a stale cache rather than decide from old labels or configurations.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Feeds `writer` a complete first listing of `objects`, as a watch does when it starts. For
/// caches fed by hand: tests, fuzzing and benchmarks share this one setup.
pub fn feed_listing<K>(writer: &mut Writer<K>, objects: impl IntoIterator<Item = K>)
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Feeds `writer` from a watch of `api` until the process stops. Objects `keep` rejects never
/// enter the cache; `strip` removes fields the cache must not hold. `current(true)` is called
/// when a listing completes, `current(false)` when the watch fails.
pub async fn follow<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    keep: impl Fn(&K) -> bool,
    strip: impl Fn(&mut K),
    current: impl Fn(bool),
    resource: &'static str,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let mut retry = FIRST_RETRY;
    loop {
        let mut events = std::pin::pin!(watcher(api.clone(), watcher::Config::default()));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    let event = event.modify(&strip);
                    let relevant = match &event {
                        watcher::Event::Apply(object)
                        | watcher::Event::InitApply(object)
                        | watcher::Event::Delete(object) => keep(object),
                        watcher::Event::Init | watcher::Event::InitDone => true,
                    };
                    if relevant {
                        writer.apply_watcher_event(&event);
                    }
                    if matches!(event, watcher::Event::InitDone) {
                        current(true);
                        retry = FIRST_RETRY;
                    }
                }
                Err(error) => {
                    current(false);
                    tracing::warn!(
                        watch = resource,
                        %error,
                        retry_in = ?retry,
                        "watch failed; its cache is stale until a fresh listing completes"
                    );
                    break;
                }
            }
        }
        current(false);
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}
