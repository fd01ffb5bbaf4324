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
