//! The body of a watch response: newline-delimited JSON `{"type":…,"object":…}` events,
//! streamed until the watch's `timeoutSeconds` passes, [`crate::FakeApiServer::break_watches`]
//! is called, the server stops, or the client goes away.
//!
//! Events are filtered per watch the way the real server's watch cache does it: a
//! modification that makes an object start matching the selectors is sent as ADDED, one
//! that makes it stop matching as DELETED (carrying the previous state stamped with the new
//! resourceVersion). With `allowWatchBookmarks=true` a BOOKMARK carrying the newest
//! resourceVersion the watch has seen (matching or not) is sent on a fixed interval.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::object;
use crate::selector::ObjectFilter;
use crate::status::ApiError;
use crate::store::{Change, ChangeType, Subscription};

/// Per-request settings from the query string.
pub(crate) struct WatchSettings {
    pub(crate) timeout: Duration,
    /// `Some` when the client sent `allowWatchBookmarks=true`.
    pub(crate) bookmark_interval: Option<Duration>,
}

/// Counts the watches in progress; the count drops when the response body is dropped.
struct OpenWatch(Arc<AtomicUsize>);

impl OpenWatch {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct EventStream {
    filter: ObjectFilter,
    /// Replayed events not yet sent.
    queued: VecDeque<Bytes>,
    live: broadcast::Receiver<Arc<Change>>,
    /// Every change up to this resourceVersion has been sent or filtered out, so it is
    /// what a bookmark may safely claim.
    considered_through: u64,
    deadline: Instant,
    /// Bumped by `break_watches()` and on shutdown.
    breaks: watch::Receiver<u64>,
    bookmarks: Option<Interval>,
    _open: OpenWatch,
}

impl EventStream {
    pub(crate) fn new(
        filter: ObjectFilter,
        subscription: Subscription,
        settings: &WatchSettings,
        breaks: watch::Receiver<u64>,
        open_watches: &Arc<AtomicUsize>,
    ) -> Self {
        let queued = subscription
            .replay
            .iter()
            .filter_map(|change| event_for(&filter, change))
            .collect();
        let bookmarks = settings.bookmark_interval.map(|period| {
            // tokio intervals must not be zero.
            let period = period.max(Duration::from_millis(1));
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Self {
            filter,
            queued,
            live: subscription.live,
            considered_through: subscription.resource_version,
            deadline: Instant::now() + settings.timeout,
            breaks,
            bookmarks,
            _open: OpenWatch::new(open_watches),
        }
    }

    pub(crate) fn into_body(self) -> Body {
        Body::from_stream(futures::stream::unfold(self, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok::<_, Infallible>(chunk), stream))
        }))
    }

    /// The next line to send, or `None` when the watch is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(event) = self.queued.pop_front() {
            return Some(event);
        }
        loop {
            tokio::select! {
                biased;
                _ = self.breaks.changed() => return None,
                _ = tokio::time::sleep_until(self.deadline) => return None,
                received = self.live.recv() => match received {
                    Ok(change) => {
                        self.considered_through = change.resource_version;
                        if let Some(event) = event_for(&self.filter, &change) {
                            return Some(event);
                        }
                    }
                    // A lagging watch is ended rather than allowed to skip changes: the
                    // client resumes from the last resourceVersion it saw.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return None,
                },
                () = next_tick(&mut self.bookmarks) => {
                    return Some(bookmark(&self.filter, self.considered_through));
                }
            }
        }
    }
}

async fn next_tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The body of a watch that asked to resume from before the compaction point: a single
/// ERROR event, as the real server sends it (with HTTP 200).
pub(crate) fn expired_body(error: &ApiError) -> Body {
    Body::from(encode_event("ERROR", &error.to_status()))
}

/// The event, if any, that a watch with `filter` receives for `change`.
fn event_for(filter: &ObjectFilter, change: &Change) -> Option<Bytes> {
    if change.kind != filter.kind() {
        return None;
    }
    let matches_now = filter.matches(&change.current);
    match change.change_type {
        ChangeType::Added => matches_now.then(|| encode_event("ADDED", &change.current)),
        ChangeType::Deleted => matches_now.then(|| encode_event("DELETED", &change.current)),
        ChangeType::Modified => {
            let matched_before = change
                .previous
                .as_ref()
                .is_some_and(|previous| filter.matches(previous));
            match (matched_before, matches_now) {
                (true, true) => Some(encode_event("MODIFIED", &change.current)),
                (false, true) => Some(encode_event("ADDED", &change.current)),
                (true, false) => {
                    let mut last_matching = change.previous.clone()?;
                    object::set_resource_version(&mut last_matching, change.resource_version);
                    Some(encode_event("DELETED", &last_matching))
                }
                (false, false) => None,
            }
        }
    }
}

fn bookmark(filter: &ObjectFilter, resource_version: u64) -> Bytes {
    encode_event(
        "BOOKMARK",
        &json!({
            "kind": filter.kind().kind(),
            "apiVersion": filter.kind().api_version(),
            "metadata": { "resourceVersion": resource_version.to_string(), "creationTimestamp": null },
        }),
    )
}

fn encode_event(event_type: &str, object: &Value) -> Bytes {
    // Written by hand to avoid cloning the object into a wrapper `Value`.
    let mut line = format!(r#"{{"type":"{event_type}","object":"#).into_bytes();
    // Serialising a `Value` into a Vec cannot fail.
    serde_json::to_writer(&mut line, object).expect("a JSON value serialises");
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}
