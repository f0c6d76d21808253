//! The layer over an in-process inner service (no sockets): what each
//! request it makes carries, hop by hop.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use refresh_machine_tower::{token_service, BoxError, RefreshLayer, TokenPair, TowerTransport};
use tower::{ServiceBuilder, ServiceExt};

/// What the inner service received: method, URI, `Authorization`, body.
type Seen = Arc<Mutex<Vec<(http::Method, String, Option<String>, Bytes)>>>;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A layer allowed `http://api.example`, logged in with access token `a`
/// (its token service is never called here).
fn layer(follow_redirects: bool) -> RefreshLayer {
    let token = token_service(tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, BoxError>(http::Response::new(Full::<Bytes>::default()))
    }));
    let transport = TowerTransport::new(token);
    let transport = if follow_redirects {
        transport.follow_redirects()
    } else {
        transport
    };
    let layer = RefreshLayer::builder_with(transport)
        .token_endpoint("http://auth.example/token", "demo-client")
        .unwrap()
        .allow_origin("http://api.example")
        .unwrap()
        .build();
    layer.set_tokens(&TokenPair::new("a")).unwrap();
    layer
}

/// An inner service recording every request: `/a` answers 303 to `/b`,
/// `/b` 307 to `/c`, anything else 200.
fn inner(
    seen: Seen,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |request: http::Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let authorization = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push((
                parts.method.clone(),
                parts.uri.to_string(),
                authorization,
                body,
            ));
            let (status, location) = match parts.uri.path() {
                "/a" => (303, Some("/b")),
                "/b" => (307, Some("/c")),
                _ => (200, None),
            };
            let mut response = http::Response::builder().status(status);
            if let Some(location) = location {
                response = response.header(http::header::LOCATION, location);
            }
            Ok::<_, BoxError>(response.body(Full::<Bytes>::default()).unwrap())
        }
    })
}

/// A POST answered 303 goes on as a GET without its body; a 307 after
/// that keeps the method and the body the hop had (none), never the
/// POST's body again.
#[test]
fn a_body_dropped_by_a_303_stays_dropped_after_a_307() {
    let seen = Seen::default();
    let api = ServiceBuilder::new()
        .layer(layer(true))
        .service(inner(seen.clone()));
    let request = http::Request::post("http://api.example/a")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from_static(b"card=4111111111111111")))
        .unwrap();
    let response = block_on(api.oneshot(request)).unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    let hops: Vec<_> = seen
        .iter()
        .map(|(m, u, _, b)| (m.as_str(), u.as_str(), b.len()))
        .collect();
    assert_eq!(
        hops,
        [
            ("POST", "http://api.example/a", 21),
            ("GET", "http://api.example/b", 0),
            ("GET", "http://api.example/c", 0),
        ]
    );
}

/// The origin is decided as the driver's `Origins` decide it: a scheme
/// in capitals (as `Uri::builder` keeps it) is still http, port 80.
#[test]
fn a_scheme_in_capitals_is_the_allowed_origin() {
    let seen = Seen::default();
    let api = ServiceBuilder::new()
        .layer(layer(false))
        .service(inner(seen.clone()));
    let uri = http::Uri::builder()
        .scheme("HTTP")
        .authority("api.example")
        .path_and_query("/me")
        .build()
        .unwrap();
    let request = http::Request::get(uri).body(Full::default()).unwrap();
    let response = block_on(api.oneshot(request)).unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2.as_deref(), Some("Bearer a"), "{seen:?}");
}

/// A response whose body a refusal predicate read ahead keeps its
/// trailers (gRPC puts its status there): the caller gets the data and
/// then the trailers, as the inner service sent them. Before, the
/// read-ahead dropped every frame that was not data.
#[test]
fn a_body_read_ahead_keeps_its_trailers() {
    let token = token_service(tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, BoxError>(http::Response::new(Full::<Bytes>::default()))
    }));
    let layer = RefreshLayer::builder(token)
        .token_endpoint("http://auth.example/token", "demo-client")
        .unwrap()
        .allow_origin("http://api.example")
        .unwrap()
        .refresh_on_statuses(&[401, 403])
        .refresh_when(|_, _, body| body == b"TOKEN_EXPIRED")
        .build();
    layer.set_tokens(&TokenPair::new("a")).unwrap();
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "7".parse().unwrap());
        let body = Full::new(Bytes::from_static(b"denied"))
            .with_trailers(async move { Some(Ok::<_, std::convert::Infallible>(trailers)) });
        Ok::<_, BoxError>(http::Response::builder().status(403).body(body).unwrap())
    });
    let api = ServiceBuilder::new().layer(layer).service(inner);
    let request = http::Request::get("http://api.example/x")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = block_on(api.oneshot(request)).unwrap();
    assert_eq!(response.status(), 403);
    let collected = block_on(response.into_body().collect()).unwrap();
    let trailers = collected.trailers().cloned();
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"denied"));
    assert_eq!(
        trailers.and_then(|t| t.get("grpc-status").cloned()),
        Some("7".parse().unwrap())
    );
}

/// The gRPC layer's origin is checked as an allowed origin is.
#[test]
fn a_grpc_layer_needs_an_http_origin() {
    use refresh_machine_tower::{ConfigError, GrpcRefreshLayer, ReplayBody};
    let identity: fn(ReplayBody) -> ReplayBody = std::convert::identity;
    for bad in ["/just/a/path", "grpc://api.example", "not a url"] {
        let e = GrpcRefreshLayer::new(layer(false), bad, identity).unwrap_err();
        assert!(matches!(e, ConfigError::InvalidOrigin(_)), "{bad}: {e:?}");
    }
    assert!(
        GrpcRefreshLayer::new(layer(false), "HTTP://user@API.example:8080/x", identity).is_ok()
    );
}
