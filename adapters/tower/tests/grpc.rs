//! `GrpcRefreshLayer` in front of a tonic `Channel`, against a tonic
//! server over HTTP/2 on 127.0.0.1 whose handlers check each call's bearer
//! token at the strict test server (`GET /api/me`: 401 is UNAUTHENTICATED),
//! so rotation and reuse detection are the test server's.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use refresh_machine_test_server::{AuthServer, ResourceFault, ServerOptions, TokenFault};
use refresh_machine_tower::{
    find_error, token_service, Config, Error, GrpcRefreshLayer, GrpcRefreshService, Hooks,
    RefreshLayer, TokenPair,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;

/// A request: some bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct Chunk {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

/// An answer: how many messages and bytes the handler read.
#[derive(Clone, PartialEq, prost::Message)]
struct Tally {
    #[prost(uint32, tag = "1")]
    messages: u32,
    #[prost(uint64, tag = "2")]
    bytes: u64,
}

/// Unary: the token is checked, the message counted.
const ME: &str = "/test.Api/Me";
/// Client streaming, read to its end before the token is checked.
const UPLOAD_READ_FIRST: &str = "/test.Api/UploadReadFirst";
/// Client streaming, the token checked before any message is read (as an
/// interceptor does): a refused call is answered while its body streams.
const UPLOAD_CHECK_FIRST: &str = "/test.Api/UploadCheckFirst";
/// Always one message, then UNAUTHENTICATED in the trailers.
const TRAILERS_AFTER_BODY: &str = "/test.Api/TrailersAfterBody";

/// One call as the gRPC server saw it.
#[derive(Clone, Debug)]
struct Call {
    path: String,
    authorization: Option<String>,
    /// Payload bytes of the messages the handler read.
    bytes: u64,
    /// The token was accepted.
    ok: bool,
}

#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<Call>>,
    /// Notified when an `UPLOAD_CHECK_FIRST` call's token was accepted,
    /// before its messages are read.
    accepted: Notify,
}

impl Seen {
    fn calls(&self, path: &str) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.path == path).cloned().collect()
    }
}

/// A tonic server (hand-written service, `tonic::server::Grpc`, prost
/// codec) on an ephemeral port of 127.0.0.1; stopped on drop.
struct GrpcServer {
    origin: String,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Whether the test server accepts `authorization` for `GET /api/me`.
async fn accepted(http: &Http, me: &str, authorization: Option<&str>) -> Result<(), Status> {
    let mut request = http::Request::get(me);
    if let Some(a) = authorization {
        request = request.header(http::header::AUTHORIZATION, a);
    }
    let response = http
        .request(request.body(Full::default()).unwrap())
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    match response.status().as_u16() {
        200 => Ok(()),
        401 => Err(Status::unauthenticated("token refused")),
        other => Err(Status::internal(format!("auth server answered {other}"))),
    }
}

/// Every message of a client stream: how many, how many bytes.
async fn tally(stream: &mut tonic::Streaming<Chunk>) -> Result<Tally, Status> {
    let mut t = Tally::default();
    while let Some(chunk) = stream.message().await? {
        t.messages += 1;
        t.bytes += chunk.data.len() as u64;
    }
    Ok(t)
}

/// One message, then `grpc-status: 16` in the trailers.
fn trailers_after_body() -> http::Response<Body> {
    let message = prost::Message::encode_to_vec(&Tally {
        messages: 1,
        bytes: 0,
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "16".parse().unwrap());
    trailers.insert("grpc-message", "expired mid-call".parse().unwrap());
    let body = Full::new(Bytes::from(framed))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .unwrap()
}

async fn serve(
    request: http::Request<Body>,
    http: Http,
    me: String,
    seen: Arc<Seen>,
) -> http::Response<Body> {
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let record = {
        let (seen, path, authorization) = (seen.clone(), path.clone(), authorization.clone());
        move |bytes: u64, ok: bool| {
            seen.calls.lock().unwrap().push(Call {
                path,
                authorization,
                bytes,
                ok,
            })
        }
    };
    let check = {
        let authorization = authorization.clone();
        move || async move { accepted(&http, &me, authorization.as_deref()).await }
    };
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Tally, Chunk>::default());
    match path.as_str() {
        ME => {
            let handler = tower::service_fn(move |call: tonic::Request<Chunk>| {
                let (check, record) = (check.clone(), record.clone());
                async move {
                    let bytes = call.get_ref().data.len() as u64;
                    let verdict = check().await;
                    record(bytes, verdict.is_ok());
                    verdict?;
                    Ok(tonic::Response::new(Tally { messages: 1, bytes }))
                }
            });
            grpc.unary(handler, request).await
        }
        UPLOAD_READ_FIRST => {
            let handler =
                tower::service_fn(move |call: tonic::Request<tonic::Streaming<Chunk>>| {
                    let (check, record) = (check.clone(), record.clone());
                    async move {
                        let t = tally(&mut call.into_inner()).await?;
                        let verdict = check().await;
                        record(t.bytes, verdict.is_ok());
                        verdict?;
                        Ok(tonic::Response::new(t))
                    }
                });
            grpc.client_streaming(handler, request).await
        }
        UPLOAD_CHECK_FIRST => {
            let handler =
                tower::service_fn(move |call: tonic::Request<tonic::Streaming<Chunk>>| {
                    let (check, record, seen) = (check.clone(), record.clone(), seen.clone());
                    async move {
                        if let Err(refused) = check().await {
                            record(0, false);
                            return Err(refused);
                        }
                        seen.accepted.notify_one();
                        let t = tally(&mut call.into_inner()).await?;
                        record(t.bytes, true);
                        Ok(tonic::Response::new(t))
                    }
                });
            grpc.client_streaming(handler, request).await
        }
        TRAILERS_AFTER_BODY => {
            record(0, false);
            trailers_after_body()
        }
        _ => Status::unimplemented(path).into_http(),
    }
}

impl GrpcServer {
    /// Serving on the current runtime, checking tokens at `auth`.
    async fn start(auth: &AuthServer) -> GrpcServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let (http, me) = (http(), auth.url("/api/me"));
        let service = {
            let seen = seen.clone();
            tower::service_fn(move |request: http::Request<Body>| {
                let (http, me, seen) = (http.clone(), me.clone(), seen.clone());
                async move { Ok::<_, Infallible>(serve(request, http, me, seen).await) }
            })
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        GrpcServer {
            origin,
            seen,
            stop: Some(stop),
        }
    }
}

/// Every test runs on a runtime of its own (two workers, as the machine
/// has two cores) and fails, rather than hangs, after a minute.
fn run<F: Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), test)
                .await
                .expect("the test took over a minute")
        })
}

type Api = Grpc<GrpcRefreshService<Channel, Body>>;

/// A layer allowed `server`'s origin, logged in there (a lifetime it does
/// not know: only a refusal makes it refresh), and how often it said
/// "log in again".
fn logged_in(
    auth_server: &AuthServer,
    allowed: &str,
    config: Config,
) -> (RefreshLayer, Arc<AtomicU32>) {
    let login_required = Arc::new(AtomicU32::new(0));
    let counter = login_required.clone();
    let auth = RefreshLayer::builder(token_service(http()))
        .token_endpoint(&auth_server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(allowed)
        .unwrap()
        .config(config)
        .timeout(Duration::from_secs(10))
        .hooks(Hooks {
            login_required: Some(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
            ..Hooks::default()
        })
        .build();
    let issued = auth_server.login();
    auth.set_tokens(&TokenPair::new(issued.access_token).with_refresh_token(issued.refresh_token))
        .unwrap();
    (auth, login_required)
}

/// A tonic client over a channel to `origin`, behind the layer.
fn api(auth: &RefreshLayer, origin: &str, replay_limit: Option<usize>) -> Api {
    let channel = Endpoint::from_shared(origin.to_owned())
        .unwrap()
        .connect_lazy();
    let mut layer = GrpcRefreshLayer::new(auth.clone(), origin, Body::new).unwrap();
    if let Some(limit) = replay_limit {
        layer = layer.replay_limit(limit);
    }
    Grpc::new(ServiceBuilder::new().layer(layer).service(channel))
}

async fn me(mut api: Api, request: tonic::Request<Chunk>) -> Result<Tally, Status> {
    api.ready().await.map_err(Status::from_error)?;
    let codec = ProstCodec::<Chunk, Tally>::default();
    let path = PathAndQuery::from_static(ME);
    Ok(api.unary(request, path, codec).await?.into_inner())
}

fn chunk(len: usize) -> tonic::Request<Chunk> {
    tonic::Request::new(Chunk { data: vec![7; len] })
}

async fn upload<S>(mut api: Api, path: &'static str, chunks: S) -> Result<Tally, Status>
where
    S: futures_util::Stream<Item = Chunk> + Send + 'static,
{
    api.ready().await.map_err(Status::from_error)?;
    let codec = ProstCodec::<Chunk, Tally>::default();
    let path = PathAndQuery::from_static(path);
    let request = tonic::Request::new(chunks);
    Ok(api
        .client_streaming(request, path, codec)
        .await?
        .into_inner())
}

fn chunks(n: usize, len: usize) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    futures_util::stream::iter((0..n).map(move |_| Chunk { data: vec![1; len] }))
}

fn strict() -> AuthServer {
    AuthServer::start_with(ServerOptions::default()).unwrap()
}

/// A unary call goes out with `authorization: Bearer <access token>`.
#[test]
fn a_unary_call_carries_the_token() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &g.origin, Config::DEFAULT);
        let token = auth
            .session()
            .tokens()
            .unwrap()
            .access_token
            .expose()
            .to_owned();
        let tally = me(api(&auth, &g.origin, None), chunk(3)).await.unwrap();
        assert_eq!(
            tally,
            Tally {
                messages: 1,
                bytes: 3
            }
        );
        let calls = g.seen.calls(ME);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            calls[0].authorization.as_deref(),
            Some(&*format!("Bearer {token}"))
        );
        assert!(calls[0].ok);
    });
}

/// 50 concurrent unary calls meet a revoked access token: one refresh
/// grant, no reuse, every call answered, none sent more than twice.
#[test]
fn an_expiry_burst_makes_one_refresh_and_every_call_succeeds() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, login_required) = logged_in(&s, &g.origin, Config::DEFAULT);
        let api = api(&auth, &g.origin, None);
        s.revoke_access_tokens();
        let calls: Vec<_> = (0..50)
            .map(|i| tokio::spawn(me(api.clone(), chunk(i))))
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let tally = call
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
            assert_eq!(tally.bytes, i as u64, "call {i} got its own body back");
        }
        let k = s.counters();
        assert_eq!(
            (k.refresh_calls, k.refresh_ok, k.reuse_detections),
            (1, 1, 0),
            "{k:?}"
        );
        let seen = g.seen.calls(ME);
        let ok = seen.iter().filter(|c| c.ok).count();
        assert_eq!(ok, 50, "{seen:?}");
        assert!(seen.len() <= 100, "{} sends", seen.len());
        assert_eq!(login_required.load(Ordering::SeqCst), 0);
    });
}

/// The refresh grant is revoked: every call fails `LoginRequired`, said
/// once, one refresh attempt, no loop; later calls fail at once.
#[test]
fn a_revoked_grant_asks_for_login_once_and_fails_typed() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, login_required) = logged_in(&s, &g.origin, Config::DEFAULT);
        let api = api(&auth, &g.origin, None);
        s.revoke_sessions();
        s.revoke_access_tokens();
        let calls: Vec<_> = (0..10)
            .map(|_| tokio::spawn(me(api.clone(), chunk(1))))
            .collect();
        for call in calls {
            let status = call.await.unwrap().expect_err("the session is lost");
            assert!(
                matches!(find_error(&status), Some(Error::LoginRequired)),
                "{status:?}"
            );
        }
        let sent = g.seen.calls(ME).len();
        assert!(sent <= 10, "each call sent once at most: {sent}");
        let status = me(api.clone(), chunk(1)).await.expect_err("still lost");
        assert!(
            matches!(find_error(&status), Some(Error::LoginRequired)),
            "{status:?}"
        );
        assert_eq!(g.seen.calls(ME).len(), sent, "a lost session fails fast");
        let k = s.counters();
        assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
        assert_eq!(login_required.load(Ordering::SeqCst), 1);
        assert!(auth.session().tokens().is_none());
    });
}

/// The token endpoint answers 503: the call fails `RefreshUnavailable`,
/// the session is kept, and once the endpoint is back the next call
/// refreshes and succeeds.
#[test]
fn a_token_endpoint_outage_fails_typed_and_keeps_the_session() {
    let s = strict();
    let mut config = Config::DEFAULT;
    config.max_refresh_attempts = 2;
    config.refresh_backoff.base = Duration::from_millis(10);
    config.refresh_backoff.max = Duration::from_millis(50);
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, login_required) = logged_in(&s, &g.origin, config);
        let api = api(&auth, &g.origin, None);
        s.revoke_access_tokens();
        s.set_token_fault(TokenFault::Status(503, Some(0)), 1000);
        let status = me(api.clone(), chunk(1))
            .await
            .expect_err("no token to be had");
        assert!(
            matches!(find_error(&status), Some(Error::RefreshUnavailable)),
            "{status:?}"
        );
        assert_eq!(
            status.code(),
            Code::Unknown,
            "a typed error is tonic's Unknown"
        );
        assert!(
            auth.session().tokens().is_some(),
            "an outage logs nobody out"
        );
        assert_eq!(login_required.load(Ordering::SeqCst), 0);
        s.clear_faults();
        me(api, chunk(1)).await.unwrap();
        let k = s.counters();
        assert_eq!((k.refresh_ok, k.reuse_detections), (1, 0), "{k:?}");
    });
}

/// A server that refuses every token: one refresh, one retry, then the
/// call fails `Unauthorized` instead of refreshing in a loop.
#[test]
fn a_fresh_token_refused_again_fails_typed_without_a_loop() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, login_required) = logged_in(&s, &g.origin, Config::DEFAULT);
        s.set_resource_fault(ResourceFault::AlwaysUnauthorized, 1000);
        let status = me(api(&auth, &g.origin, None), chunk(1))
            .await
            .expect_err("every token refused");
        assert!(
            matches!(find_error(&status), Some(Error::Unauthorized(200))),
            "{status:?}"
        );
        assert_eq!(
            g.seen.calls(ME).len(),
            2,
            "sent, refreshed, sent again, no more"
        );
        let k = s.counters();
        assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
        assert!(auth.session().tokens().is_some());
        assert_eq!(login_required.load(Ordering::SeqCst), 0);
    });
}

/// A client stream within the replay limit, read whole by a server that
/// then refuses its token: sent again after the refresh, every byte of it.
#[test]
fn a_refused_client_stream_is_sent_again_whole() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &g.origin, Config::DEFAULT);
        s.revoke_access_tokens();
        let tally = upload(
            api(&auth, &g.origin, Some(1024)),
            UPLOAD_READ_FIRST,
            chunks(3, 100),
        )
        .await
        .unwrap();
        assert_eq!(
            tally,
            Tally {
                messages: 3,
                bytes: 300
            }
        );
        let calls = g.seen.calls(UPLOAD_READ_FIRST);
        let shape: Vec<_> = calls.iter().map(|c| (c.bytes, c.ok)).collect();
        assert_eq!(shape, [(300, false), (300, true)], "{calls:?}");
        assert_ne!(calls[0].authorization, calls[1].authorization);
        assert_eq!(s.counters().refresh_calls, 1);
    });
}

/// Refused before the server read any of it, while the caller has not
/// finished the stream: the retry sends what was read so far again and
/// then the rest, as the caller gives it.
#[test]
fn a_stream_refused_while_it_is_being_written_is_sent_again_then_finished() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &g.origin, Config::DEFAULT);
        s.revoke_access_tokens();
        let (tx, rx) = mpsc::unbounded_channel::<Chunk>();
        tx.send(Chunk { data: vec![1; 10] }).unwrap();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let call = tokio::spawn(upload(
            api(&auth, &g.origin, None),
            UPLOAD_CHECK_FIRST,
            stream,
        ));
        // The retry's token was accepted; only now does the caller go on.
        g.seen.accepted.notified().await;
        tx.send(Chunk { data: vec![2; 20] }).unwrap();
        drop(tx);
        let tally = call.await.unwrap().unwrap();
        assert_eq!(
            tally,
            Tally {
                messages: 2,
                bytes: 30
            }
        );
        let calls = g.seen.calls(UPLOAD_CHECK_FIRST);
        let shape: Vec<_> = calls.iter().map(|c| (c.bytes, c.ok)).collect();
        assert_eq!(shape, [(0, false), (30, true)], "{calls:?}");
        assert_eq!(s.counters().refresh_calls, 1);
    });
}

/// A client stream longer than the replay limit is sent once, whole, and
/// when refused, not again: the call fails `BodyNotReplayable`, the session
/// is refreshed, and the caller's own retry succeeds.
#[test]
fn a_stream_over_the_replay_limit_is_sent_once_and_fails_typed() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &g.origin, Config::DEFAULT);
        let api = api(&auth, &g.origin, Some(1024));
        s.revoke_access_tokens();
        let status = upload(api.clone(), UPLOAD_READ_FIRST, chunks(8, 512))
            .await
            .expect_err("refused, and too long to send again");
        assert!(
            matches!(find_error(&status), Some(Error::BodyNotReplayable(_))),
            "{status:?}"
        );
        let calls = g.seen.calls(UPLOAD_READ_FIRST);
        let shape: Vec<_> = calls.iter().map(|c| (c.bytes, c.ok)).collect();
        assert_eq!(
            shape,
            [(4096, false)],
            "sent once, never truncated: {calls:?}"
        );
        assert_eq!(s.counters().refresh_calls, 1, "the session was refreshed");
        let tally = upload(api, UPLOAD_READ_FIRST, chunks(8, 512))
            .await
            .unwrap();
        assert_eq!(
            tally,
            Tally {
                messages: 8,
                bytes: 4096
            }
        );
        let k = s.counters();
        assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
    });
}

/// A server on another origin never sees the token, not even one the
/// caller set, nor when the client's URI names the allowed origin: the
/// channel goes to its own endpoint, and so does the layer's decision.
#[test]
fn the_token_never_goes_to_another_origin() {
    let s = strict();
    run(async {
        let allowed = GrpcServer::start(&s).await;
        let other = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &allowed.origin, Config::DEFAULT);
        let to_other = api(&auth, &other.origin, None);
        let mut request = chunk(1);
        request
            .metadata_mut()
            .insert("authorization", "Bearer stale".parse().unwrap());
        let status = me(to_other.clone(), request)
            .await
            .expect_err("no token there");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            find_error(&status).is_none(),
            "the server's answer, as it is"
        );
        // A client that names the allowed origin, over the other channel.
        let channel = Endpoint::from_shared(other.origin.clone())
            .unwrap()
            .connect_lazy();
        let layer = GrpcRefreshLayer::new(auth.clone(), &other.origin, Body::new).unwrap();
        let misnamed = Grpc::with_origin(
            ServiceBuilder::new().layer(layer).service(channel),
            allowed.origin.parse().unwrap(),
        );
        me(misnamed, chunk(1)).await.expect_err("no token there");
        let calls = other.seen.calls(ME);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.iter().all(|c| c.authorization.is_none()), "{calls:?}");
        assert!(allowed.seen.calls(ME).is_empty());
        assert_eq!(s.counters().refresh_calls, 0);
    });
}

/// Not handled, by design: UNAUTHENTICATED in the trailers after a
/// message is delivered as it is (the layer does not hold a response back
/// until its stream ends). No refresh, no retry.
#[test]
fn unauthenticated_in_trailers_after_a_body_is_delivered_as_it_is() {
    let s = strict();
    run(async {
        let g = GrpcServer::start(&s).await;
        let (auth, _) = logged_in(&s, &g.origin, Config::DEFAULT);
        let mut api = api(&auth, &g.origin, None);
        api.ready().await.unwrap();
        let codec = ProstCodec::<Chunk, Tally>::default();
        let path = PathAndQuery::from_static(TRAILERS_AFTER_BODY);
        let status = api
            .unary(chunk(1), path, codec)
            .await
            .expect_err("status 16");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "expired mid-call");
        assert!(find_error(&status).is_none());
        assert_eq!(g.seen.calls(TRAILERS_AFTER_BODY).len(), 1);
        assert_eq!(s.counters().refresh_calls, 0);
    });
}
