//! The endpoint served on 127.0.0.1:0: API-key protection of every path but `/healthz`, and
//! everything open without keys.

use std::time::Duration;

use super::*;
use crate::config::{Config, Secret};
use crate::telemetry::client::{get, get_with_headers};

const KEY: &str = "k3y-for-tests";

/// Serves an endpoint with `keys`; returns its address and the stop switch.
async fn serve(keys: ApiKeys) -> (SocketAddr, CancellationToken) {
    let t = Telemetry::new(&Config::default()).expect("telemetry");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (bound, serve) = bind_with(addr, t, keys).await.expect("bind");
    let stop = CancellationToken::new();
    tokio::spawn(serve(stop.clone()));
    (bound, stop)
}

fn keys(header: &str, keys: &[&str]) -> ApiKeys {
    let s = SecurityConfig {
        api_keys: keys.iter().map(|&k| Secret::new(k)).collect(),
        api_key_header: header.into(),
        ..SecurityConfig::default()
    };
    ApiKeys::from_config(&s).expect("valid header")
}

async fn status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    get_with_headers(addr, path, headers, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .0
}

#[tokio::test]
async fn with_keys_every_path_but_liveness_needs_one() {
    let (addr, stop) = serve(keys("X-API-Key", &["other-key", KEY])).await;
    for path in ["/metrics", "/ready", "/stats"] {
        let (code, body) = get(addr, path, Duration::from_secs(5)).await.expect("get");
        assert_eq!(code, 401, "{path} without a key");
        assert!(body.contains("header x-api-key"), "{body}");
        assert_eq!(
            status(addr, path, &[("X-API-Key", "wrong")]).await,
            401,
            "{path} with a wrong key"
        );
        assert_eq!(
            status(addr, path, &[("X-API-Key", &KEY[..KEY.len() - 1])]).await,
            401,
            "{path} with a prefix of the key"
        );
        assert_eq!(
            status(addr, path, &[("Authorization", KEY)]).await,
            401,
            "{path} with the key in another header"
        );
    }
    // Header names are case-insensitive; either key works. /ready is 503 here (no model, no
    // group): past the key check, which is what counts.
    assert_eq!(status(addr, "/metrics", &[("x-api-key", KEY)]).await, 200);
    assert_eq!(
        status(addr, "/stats", &[("X-API-KEY", "other-key")]).await,
        200
    );
    assert_eq!(status(addr, "/ready", &[("X-API-Key", KEY)]).await, 503);
    assert_eq!(status(addr, "/healthz", &[]).await, 200, "liveness is open");
    assert_eq!(status(addr, "/nowhere", &[("X-API-Key", KEY)]).await, 404);
    stop.cancel();
}

#[tokio::test]
async fn the_header_name_is_configurable() {
    let (addr, stop) = serve(keys("X-Kbatch-Key", &[KEY])).await;
    assert_eq!(status(addr, "/metrics", &[("X-API-Key", KEY)]).await, 401);
    assert_eq!(
        status(addr, "/metrics", &[("X-Kbatch-Key", KEY)]).await,
        200
    );
    stop.cancel();
}

#[tokio::test]
async fn without_keys_everything_is_open() {
    let (addr, stop) = serve(ApiKeys::from_config(&SecurityConfig::default()).expect("keys")).await;
    assert_eq!(status(addr, "/metrics", &[]).await, 200);
    assert_eq!(status(addr, "/stats", &[]).await, 200);
    assert_eq!(status(addr, "/healthz", &[]).await, 200);
    assert_eq!(
        status(addr, "/ready", &[]).await,
        503,
        "not ready, but not refused"
    );
    stop.cancel();
}

#[test]
fn keys_compare_whole_values_and_never_print() {
    let k = keys("X-API-Key", &[KEY]);
    let mut h = HeaderMap::new();
    assert!(!k.accepts(&h));
    h.insert("x-api-key", HeaderValue::from_static(KEY));
    assert!(k.accepts(&h));
    h.insert("x-api-key", HeaderValue::from_static(""));
    assert!(!k.accepts(&h));
    assert!(!format!("{k:?}").contains(KEY));
    assert!(ApiKeys::open().is_open());
    let bad = SecurityConfig {
        api_key_header: "not a header".into(),
        ..SecurityConfig::default()
    };
    assert!(ApiKeys::from_config(&bad).is_err());
}
