//! The admin server: liveness, readiness, Prometheus metrics and the consistency report.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::index::LiveIndex;
use crate::metrics::Metrics;
use crate::watch::SyncGate;

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The metrics to encode.
    pub metrics: Arc<Metrics>,
    /// The index to report on.
    pub index: Arc<LiveIndex>,
    /// Whether every initial list is in the index.
    pub gate: Arc<SyncGate>,
    /// Set when a fatal problem makes the process unfit to serve (liveness fails).
    pub broken: Arc<AtomicBool>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/report", get(report))
        .with_state(state)
}

async fn healthz(State(state): State<AdminState>) -> Response {
    if state.broken.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "broken\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.gate.is_synced() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let pending = state.gate.pending().join(", ");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for the initial list of: {pending}\n"),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn report(State(state): State<AdminState>) -> Response {
    // A check of a large mesh is CPU work; keep it off the async workers.
    let index = state.index.clone();
    match tokio::task::spawn_blocking(move || index.report()).await {
        Ok(Ok(report)) => (
            [(header::CONTENT_TYPE, "application/json")],
            report.to_string(),
        )
            .into_response(),
        Ok(Err(error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("integrity check failed: {error}\n"),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("integrity check panicked: {error}\n"),
        )
            .into_response(),
    }
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header end");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (status, body.to_string())
    }

    #[tokio::test]
    async fn probes_follow_the_sync_gate_and_the_broken_flag_and_report_is_the_engine_json() {
        let metrics = Arc::new(Metrics::new());
        let state = AdminState {
            index: Arc::new(LiveIndex::new(metrics.clone()).expect("engine")),
            metrics,
            gate: Arc::new(SyncGate::new(["VirtualService".to_string()])),
            broken: Arc::new(AtomicBool::new(false)),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));

        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("VirtualService"), "{body}");

        state.gate.synced("VirtualService");
        assert_eq!(get(addr, "/readyz").await.0, 200);

        state.broken.store(true, Ordering::Relaxed);
        assert_eq!(get(addr, "/healthz").await.0, 503);

        let (status, body) = get(addr, "/report").await;
        assert_eq!(status, 200);
        let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(report["reportVersion"], serde_json::json!(1));
        assert_eq!(report["findings"], serde_json::json!([]));

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("mesh_engine_check_duration_seconds_count 1"),
            "{body}"
        );

        let _ = stop.send(());
        server.await.expect("joined").expect("served");
    }
}
