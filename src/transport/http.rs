//! Short-lived HTTP clients (docs/PROTOCOL.md 5.3) and the WebSocket upgrade at `/ws`:
//! an axum router over one accepted connection, with JSON errors everywhere.
//!
//! `GET /` the browser page, `GET /diary` the live diary page, `/healthz`,
//! `/metrics` (Prometheus text), `GET /api/rooms`,
//! `GET|POST /api/rooms/{room}/messages`, `GET /api/connections` (the
//! file-descriptor diary, live over a WebSocket: [`diary`]), `GET /ws`.
//!
//! Each HTTP connection is listed in the diary while it lasts, with the
//! request it serves and the bytes it moved ([`Counted`]).
//!
//! A post is held to what a connection's messages are (docs/PROTOCOL.md
//! 5.5): the same text limit, and `--rate`/`--burst` per client address
//! ([`Posting`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::{self, Denial, Need};
use crate::error::{Error, Result};
use crate::hub::event::ErrorCode;
use crate::hub::session::{DEFAULT_HISTORY, Limits, MAX_HISTORY, refuse_text};
use crate::hub::{ConnectionInfo, Hub, HubError, Traffic, Transport};
use crate::limits::Slot;
use crate::log::Query as Page;
use crate::model::names::{Nick, RoomName};
use crate::net::accept::{Ended, Peer};
use crate::net::websocket::{
    Refusal, check_upgrade, serve_http1, server_config, server_socket, switching_protocols,
};
use crate::protocol::json::message;
use crate::transport::address_rate::{AddressBuckets, MAX_ADDRESSES};
use crate::transport::diary;
use crate::transport::live::Live;
use crate::transport::prometheus;
use crate::transport::ws::{self, JoinQuery};

/// The browser chat page, built into the binary.
const PAGE: &str = include_str!("../../web/index.html");

/// The live diary page, built into the binary.
const DIARY_PAGE: &str = include_str!("../../web/diary.html");

/// How long a client has to send a request's body once its head is in
/// (docs/PROTOCOL.md 5.5).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP limits.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
}

/// What `POST /api/rooms/{room}/messages` is held to: the rate per client
/// address (`--rate 0`: none) and the text limit, replaceable on SIGHUP.
#[derive(Debug)]
pub struct Posting {
    /// The longest text, in bytes.
    max_text: AtomicUsize,
    /// The rate limit's buckets, by client address.
    buckets: AddressBuckets,
}

impl Posting {
    /// Posts held to `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            max_text: AtomicUsize::new(limits.max_text),
            buckets: AddressBuckets::new(limits.rate, limits.burst, MAX_ADDRESSES),
        }
    }

    /// Puts `limits` in force from the next post on.
    pub fn set_limits(&self, limits: Limits) {
        self.max_text.store(limits.max_text, Ordering::Relaxed);
        self.buckets.reset(limits.rate, limits.burst);
    }

    /// Counts a post from `addr`; over the limit, how long until it may post.
    fn admit(&self, addr: std::net::IpAddr) -> std::result::Result<(), Duration> {
        let now = tokio::time::Instant::now().into_std();
        self.buckets.admit(addr, now)
    }

    /// The longest text a post may carry, in bytes.
    fn max_text(&self) -> usize {
        self.max_text.load(Ordering::Relaxed)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The hub.
    pub hub: Hub,
    /// The settings SIGHUP replaces: WebSocket limits, the tokens.
    pub live: Arc<Live>,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// WebSocket sessions: axum spawns them, this owns them, so shutdown
    /// waits for them like for every other connection.
    pub sessions: TaskTracker,
    /// Cancelled when the server stops: live diaries say goodbye.
    pub shutdown: CancellationToken,
}

/// Where a request comes from: the connection's peer and file descriptor,
/// and whether it came over TLS.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The peer and the connection's file descriptor.
    pub peer: Peer,
    /// Whether the connection came over TLS.
    pub tls: bool,
}

/// The application: every route, with JSON errors for the rest.
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/diary", get(diary_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/rooms", get(rooms))
        .route(
            "/api/rooms/{room}/messages",
            get(room_messages).post(post_message),
        )
        .route("/api/connections", get(connections))
        .route("/ws", get(web_socket))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "no such path") })
        .method_not_allowed_fallback(|| async {
            api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body))
        .layer(middleware::from_fn_with_state(
            config.max_body,
            read_body_in_time,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.live),
            require_token,
        ))
        .layer(middleware::from_fn(count_request))
        .with_state(state)
}

/// Counts every answered request in `switchboard_http_requests_total` by
/// route (the path pattern, so rooms do not multiply the series), method
/// and status.
async fn count_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method: &'static str = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = response.status().as_str().to_owned();
    metrics::counter!("switchboard_http_requests_total",
        "route" => route, "method" => method, "status" => status)
    .increment(1);
    response
}

/// Serves HTTP (and WebSocket upgrades) on one accepted connection, which
/// `hub`'s diary lists while it lasts (`tls` says whether it came over TLS).
/// Every request carries the connection's `slot`, which a WebSocket session
/// takes over: the connection then ends, and is logged, with the session
/// ([`Ended::HandedOff`]).
///
/// # Errors
/// [`Error::Http`] when the HTTP exchange fails (malformed request, slow head).
pub async fn serve<IO>(
    stream: IO,
    peer: Peer,
    tls: bool,
    hub: Hub,
    app: Router,
    slot: Slot,
) -> Result<Ended>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let visit = Arc::new(hub.visit(ConnectionInfo::now(
        peer.fd,
        peer.addr,
        Transport::Http,
        tls,
    )));
    let stream = Counted {
        inner: stream,
        traffic: Some(Arc::clone(visit.traffic())),
    };
    let origin = Origin { peer, tls };
    let request_slot = slot.clone();
    let service = TowerToHyperService::new(app.map_request(
        move |mut request: axum::http::Request<Incoming>| {
            // The path only: a query may hold a token.
            visit.serving(format!("{} {}", request.method(), request.uri().path()));
            request.extensions_mut().insert(origin);
            request.extensions_mut().insert(request_slot.clone());
            request
        },
    ));
    let served = serve_http1(stream, service).await;
    if slot.is_handed_off() {
        if let Err(err) = served {
            tracing::debug!("{peer}: before the upgrade: {err}");
        }
        return Ok(Ended::HandedOff);
    }
    served.map(|()| Ended::Closed).map_err(|err| Error::Http {
        reason: err.to_string(),
    })
}

/// A stream that counts the bytes going through it into a diary's
/// [`Traffic`], until the diary lets go of that (the connection was
/// upgraded to a WebSocket, which counts its own).
struct Counted<S> {
    inner: S,
    traffic: Option<Arc<Traffic>>,
}

impl<S> Counted<S> {
    /// The counters, while someone still reads them.
    fn traffic(&mut self) -> Option<&Traffic> {
        if self
            .traffic
            .as_ref()
            .is_some_and(|t| Arc::strong_count(t) == 1)
        {
            self.traffic = None;
        }
        self.traffic.as_deref()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if let Some(traffic) = self.traffic() {
            traffic.received(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(written)), Some(traffic)) = (&polled, self.traffic()) {
            traffic.sent(*written);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(written)), Some(traffic)) = (&polled, self.traffic()) {
            traffic.sent(*written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads the whole request body (at most `max_body` bytes) before the
/// handler runs, giving the client [`BODY_TIMEOUT`] once its head is in: a
/// client that trickles its body (a slow POST) holds its connection no
/// longer, since hyper's head timeout ends with the head (docs/PROTOCOL.md
/// 5.5). `408` and a closed connection when the body is not all there in
/// time, `413` when it is too big, `400` when it breaks off.
async fn read_body_in_time(
    State(max_body): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max_body).collect()).await;
    match read {
        Ok(Ok(body)) => {
            let request = Request::from_parts(parts, Body::from(body.to_bytes()));
            next.run(request).await
        }
        Ok(Err(err)) if err.is::<LengthLimitError>() => api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {max_body} bytes"),
        ),
        Ok(Err(err)) => api_error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body could not be read: {err}"),
        ),
        Err(_) => {
            let reason = format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            );
            let mut response = api_error(StatusCode::REQUEST_TIMEOUT, "timeout", reason);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The JSON error body of docs/PROTOCOL.md 5.3 with its status.
pub fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

/// Answers 401 (or 403) unless the request carries the token its path needs:
/// `Authorization: Bearer T`, or `?token=T` on `/ws`, `/diary` and
/// `/api/connections` (a browser cannot set headers on a WebSocket, nor on
/// a page it opens). The chat page and the health check are open to all.
async fn require_token(State(live): State<Arc<Live>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let need = match path {
        "/" | "/healthz" => Need::Nothing,
        "/api/connections" | "/diary" => Need::Admin,
        _ => Need::Client,
    };
    let from_query = matches!(path, "/ws" | "/diary" | "/api/connections")
        .then(|| auth::query_token(request.uri().query()))
        .flatten();
    let offered = auth::bearer(request.headers()).or(from_query.as_deref());
    let verdict = live.access().check(need, offered);
    match verdict {
        Ok(()) => next.run(request).await,
        Err(Denial::Forbidden) => api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs the admin token",
        ),
        Err(Denial::Unauthorized) => {
            let mut response = api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN on /ws and /diary)",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// `GET /`.
async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /diary`.
async fn diary_page() -> Html<&'static str> {
    Html(DIARY_PAGE)
}

/// `GET /healthz`: `ok` while messages can be stored, 503 and why when not.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.hub.health() {
        Ok(()) => "ok\n".into_response(),
        Err(err) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable.as_str(),
            err.to_string(),
        ),
    }
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_metrics",
            "metrics are not recorded",
        );
    };
    let mut response = prometheus::sorted(&handle.render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /api/rooms`: every room with members or history, on every node.
async fn rooms(State(state): State<AppState>) -> Response {
    match state.hub.rooms().await {
        Ok(rooms) => {
            let rooms: Vec<Value> = rooms
                .into_iter()
                .map(|(room, members, last_id)| {
                    json!({"room": room.as_str(), "members": members, "last_id": last_id})
                })
                .collect();
            Json(Value::Array(rooms)).into_response()
        }
        Err(err) => log_unavailable(&err),
    }
}

/// The query of `GET /api/rooms/{room}/messages`.
#[derive(Debug, Deserialize)]
struct MessagesQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/rooms/{room}/messages?since=ID&limit=L`: oldest first.
async fn room_messages(
    State(state): State<AppState>,
    Path(room): Path<String>,
    query: std::result::Result<Query<MessagesQuery>, QueryRejection>,
) -> Response {
    let room = match RoomName::parse(&room) {
        Ok(room) => room,
        Err(err) => return api_error(StatusCode::BAD_REQUEST, "invalid_room", err.to_string()),
    };
    let Ok(Query(query)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "since and limit must be non-negative integers",
        );
    };
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY);
    let query = match query.since {
        Some(since) => Page::After {
            room,
            after: since,
            up_to: u64::MAX,
            limit,
        },
        None => Page::Latest { room, limit },
    };
    match state.hub.history(query).await {
        Ok(messages) => {
            Json(json!({"messages": messages.iter().map(|m| message(m)).collect::<Vec<_>>()}))
                .into_response()
        }
        Err(err) => log_unavailable(&err),
    }
}

/// The body of `POST /api/rooms/{room}/messages`.
#[derive(Debug, Deserialize)]
struct PostBody {
    from: String,
    text: String,
}

/// `POST /api/rooms/{room}/messages`: `201 {"id": ID}`, delivered to live
/// members. Every post counts against its address's rate limit, refused ones
/// too. The sender may not be a live user's nick (on any node) unless the
/// request carries the admin token: docs/PROTOCOL.md 5.3.
async fn post_message(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    Path(room): Path<String>,
    headers: header::HeaderMap,
    body: std::result::Result<Json<PostBody>, JsonRejection>,
) -> Response {
    let posting = state.live.posting();
    if let Err(wait) = posting.admit(origin.peer.addr.ip()) {
        return rate_limited(wait);
    }
    let room = match RoomName::parse(&room) {
        Ok(room) => room,
        Err(err) => return api_error(StatusCode::BAD_REQUEST, "invalid_room", err.to_string()),
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return json_rejection(&rejection),
    };
    let from = match Nick::parse(&body.from) {
        Ok(from) => from,
        Err(err) => return api_error(StatusCode::BAD_REQUEST, "invalid_nick", err.to_string()),
    };
    if let Some((code, message)) = refuse_text(&body.text, posting.max_text()) {
        let status = match code {
            ErrorCode::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        return api_error(status, code.as_str(), message);
    }
    if !state.live.access().is_admin(auth::bearer(&headers)) {
        match state.hub.holder(&from).await {
            Ok(None) => {}
            Ok(Some(holder)) => return impersonation(&holder),
            Err(err) => return log_unavailable(&err),
        }
    }
    match state.hub.post(&room, from, &body.text).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(err @ HubError::TooManyRooms(_)) => api_error(
            StatusCode::CONFLICT,
            ErrorCode::TooManyRooms.as_str(),
            err.to_string(),
        ),
        Err(err) => log_unavailable(&err),
    }
}

/// 409 for a post in the name of someone who is connected.
fn impersonation(holder: &Nick) -> Response {
    api_error(
        StatusCode::CONFLICT,
        ErrorCode::NickTaken.as_str(),
        format!("{holder} is connected: post under another name (or with the admin token)"),
    )
}

/// 429 for a post over its address's rate limit, saying when to come back
/// (`Retry-After` in whole seconds, the message in milliseconds).
fn rate_limited(wait: Duration) -> Response {
    let millis = wait.as_millis().max(1);
    let mut response = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited.as_str(),
        format!("slow down: try again in {millis} ms"),
    );
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// 503 for a message the log did not store, or history it could not read:
/// the client may try again.
fn log_unavailable(err: &HubError) -> Response {
    tracing::warn!("{err}");
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable.as_str(),
        err.to_string(),
    )
}

/// The JSON error for a body that could not be read as JSON.
fn json_rejection(rejection: &JsonRejection) -> Response {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "missing_field",
        _ => "bad_json",
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    api_error(status, code, rejection.body_text())
}

/// `GET /api/connections`: the file-descriptor diary; upgraded to a
/// WebSocket, the diary live ([`diary::stream`]).
async fn connections(
    State(state): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(slot): Extension<Slot>,
    mut request: Request,
) -> Response {
    if !request.headers().contains_key(header::UPGRADE) {
        return Json(json!(state.hub.diary())).into_response();
    }
    let accept_key = match check_upgrade(request.method(), request.headers()) {
        Ok(accept_key) => accept_key,
        Err(refusal) => return upgrade_refusal(refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let AppState {
        hub,
        sessions,
        shutdown,
        ..
    } = state;
    let slot = slot.hand_off();
    sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = server_socket(upgraded, server_config(diary::MAX_MESSAGE));
                diary::stream(socket, origin, hub, shutdown).await;
                tracing::info!("disconnected {}", origin.peer);
            }
            Err(err) => tracing::info!("disconnected {}: upgrade failed: {err}", origin.peer),
        }
        drop(slot);
    });
    switching_protocols(&accept_key).map(Body::new)
}

/// `GET /ws?nick=N&room=R&since=ID`: upgrade to the JSON protocol.
///
/// The upgrade is done here rather than by axum's `WebSocketUpgrade`, whose
/// spawned task keeps the whole handshake's state for the connection's life:
/// a short handshake task builds the session and hands it to a task of its
/// own, so an idle WebSocket costs only what its session needs. The session
/// holds the connection's slot under the limits until it ends.
async fn web_socket(
    State(state): State<AppState>,
    Extension(Origin { peer, tls }): Extension<Origin>,
    Extension(slot): Extension<Slot>,
    query: std::result::Result<Query<JoinQuery>, QueryRejection>,
    mut request: Request,
) -> Response {
    let accept_key = match check_upgrade(request.method(), request.headers()) {
        Ok(accept_key) => accept_key,
        Err(refusal) => return upgrade_refusal(refusal),
    };
    let Ok(Query(join)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "since must be a non-negative integer",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let AppState {
        hub,
        live,
        sessions,
        ..
    } = state;
    let config = live.ws();
    let tracker = sessions.clone();
    let slot = slot.hand_off();
    let handshake = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return tracing::info!("disconnected {peer}: upgrade failed: {err}"),
        };
        let limits = server_config(config.max_message);
        let socket = server_socket(upgraded, limits);
        let session = ws::serve(socket, peer, tls, hub, &config, join, slot);
        sessions.spawn(session);
    };
    // Tracked from now (an upgrade in flight too) until the session ends,
    // so shutdown waits for it like for every other connection.
    tracker.spawn(handshake);
    switching_protocols(&accept_key).map(Body::new)
}

/// A refused upgrade, answered as RFC 6455 asks (426 with our version for
/// plain HTTP or another version, 400 for a bad key), with a JSON body.
fn upgrade_refusal(refusal: Refusal) -> Response {
    let (status, reason) = refusal.status_and_reason();
    let code = match refusal {
        Refusal::NotAnUpgrade => "upgrade_required",
        Refusal::UnsupportedVersion => "bad_websocket_version",
        Refusal::BadKey => "bad_upgrade",
    };
    let mut response = api_error(status, code, reason);
    Refusal::advertise(response.headers_mut());
    response
}
