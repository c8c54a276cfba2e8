//! kube-fake-client answers `?watch=true` with a LIST, so a `Controller` never sees changes.
//! This tower service sits in front of it: every request passes through, except watches, which
//! it serves by polling the LIST (every 50 ms unless told otherwise) and streaming the differences
//! as watch events (ADDED / MODIFIED by resourceVersion, DELETED), until the watch's timeout.
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, StreamBody};
use kube::client::Body;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct WatchShim {
    pub inner: kube::Client,
    /// Every request's path and query, with its Accept header.
    pub requests: Requests,
    /// How often a watch polls the LIST.
    pub poll: Duration,
    /// A watch from a resourceVersion starts from the objects as they are, as an API server's
    /// does, instead of replaying them all as ADDED. A change between the client's LIST and its
    /// watch is then missed: right for a benchmark's steady state, not for a test.
    pub resume: bool,
}

pub type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A client whose watches work on the in-memory API.
pub fn watching(fake: kube::Client) -> kube::Client {
    watching_recorded(fake).0
}

/// [`watching`], and the requests it is sent.
pub fn watching_recorded(fake: kube::Client) -> (kube::Client, Requests) {
    let requests = Requests::default();
    let shim = WatchShim { inner: fake, requests: requests.clone(), poll: Duration::from_millis(50), resume: false };
    (kube::Client::new(shim, "default"), requests)
}

/// For benchmarks: [`watching`], polling every `poll` (a LIST of thousands of objects is not
/// free), and resuming watches from their resourceVersion (see [`WatchShim::resume`]).
pub fn watching_every(fake: kube::Client, poll: Duration) -> WatchShim {
    WatchShim { inner: fake, requests: Requests::default(), poll, resume: true }
}

impl tower::Service<Request<Body>> for WatchShim {
    type Response = Response<UnsyncBoxBody<Bytes, BoxError>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (client, poll, resume) = (self.inner.clone(), self.poll, self.resume);
        let accept = request.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Ok(mut requests) = self.requests.lock() {
            requests.push((request.uri().to_string(), accept.to_string()));
        }
        Box::pin(async move {
            let query = request.uri().query().unwrap_or_default().to_string();
            let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
            if !watch {
                let response = client.send(request).await?;
                return Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()));
            }
            let timeout = query
                .split('&')
                .find_map(|p| p.strip_prefix("timeoutSeconds="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(290u64);
            let selectors: Vec<&str> = query
                .split('&')
                .filter(|p| p.starts_with("labelSelector=") || p.starts_with("fieldSelector="))
                .collect();
            let list_uri = format!("{}?{}", request.uri().path(), selectors.join("&"));
            let from_version =
                query.split('&').filter_map(|p| p.strip_prefix("resourceVersion=")).any(|v| !v.is_empty() && v != "0");
            let events = async_stream(client, list_uri, Duration::from_secs(timeout), poll, resume && from_version);
            Ok(Response::new(StreamBody::new(events).boxed_unsync()))
        })
    }
}

/// Polls the list and yields one JSON watch event per line.
fn async_stream(
    client: kube::Client,
    list_uri: String,
    timeout: Duration,
    poll: Duration,
    quiet_first: bool,
) -> impl futures::Stream<Item = Result<http_body::Frame<Bytes>, BoxError>> + Send {
    let deadline = tokio::time::Instant::now() + timeout;
    let start = (HashMap::<String, (String, serde_json::Value)>::new(), quiet_first);
    futures::stream::unfold(start, move |(mut seen, mut quiet)| {
        let (client, list_uri) = (client.clone(), list_uri.clone());
        async move {
            loop {
                if tokio::time::Instant::now() > deadline {
                    return None;
                }
                let request = Request::get(&list_uri).body(Vec::new()).ok()?;
                let list: serde_json::Value = client.request(request).await.ok()?;
                let (api_version, list_kind) =
                    (list["apiVersion"].as_str().unwrap_or_default(), list["kind"].as_str().unwrap_or_default());
                let kind = list_kind.strip_suffix("List").unwrap_or(list_kind).to_string();
                let mut now = HashMap::new();
                for mut item in list["items"].as_array().cloned().unwrap_or_default() {
                    item["apiVersion"] = api_version.into();
                    item["kind"] = kind.clone().into();
                    let key = format!("{}/{}", item["metadata"]["namespace"], item["metadata"]["name"]);
                    let version = item["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
                    now.insert(key, (version, item));
                }
                if std::mem::take(&mut quiet) {
                    seen = now;
                    tokio::time::sleep(poll).await;
                    continue;
                }
                let mut lines = String::new();
                for (key, (version, item)) in &now {
                    let kind = match seen.get(key) {
                        None => "ADDED",
                        Some((old, _)) if old != version => "MODIFIED",
                        Some(_) => continue,
                    };
                    lines += &format!("{}\n", serde_json::json!({"type": kind, "object": item}));
                }
                for (key, (_, item)) in &seen {
                    if !now.contains_key(key) {
                        lines += &format!("{}\n", serde_json::json!({"type": "DELETED", "object": item}));
                    }
                }
                seen = now;
                if !lines.is_empty() {
                    return Some((Ok(http_body::Frame::data(Bytes::from(lines))), (seen, quiet)));
                }
                tokio::time::sleep(poll).await;
            }
        }
    })
}
