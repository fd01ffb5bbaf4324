//! Memory and time of the live index at mesh scale, without an apiserver: N VirtualServices bound
//! to one Gateway, each with its Service, fed as the watches feed them (batches of 500), then one
//! full integrity check. `cargo run -p mesh-reconcile --example index_scale -- 100000`.
//! Prints VmRSS/VmHWM from /proc (Linux).

use std::sync::Arc;
use std::time::Instant;

use mesh_reconcile::index::{LiveIndex, WatchedKind};
use mesh_reconcile::metrics::Metrics;
use serde_json::json;

/// Resident and peak resident memory.
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> Result<(), mesh_integrity::Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let index = LiveIndex::new(Arc::new(Metrics::new()))?;
    println!("start {}", rss());
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..n {
        let ns = format!("team-{}", i % 200);
        batch.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": format!("vs-{i}"), "namespace": ns, "uid": format!("u{i}"), "resourceVersion": "1",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": format!("app-{i}")}},
            "spec": {"hosts": [format!("svc-{i}.example.com")], "gateways": ["istio-system/public"],
                     "http": [{"match": [{"uri": {"prefix": "/"}}],
                               "route": [{"destination": {"host": format!("svc-{i}.{ns}.svc.cluster.local"), "port": {"number": 80}}}]}]}
        }));
        if batch.len() == 500 {
            index.apply_batch(WatchedKind::VirtualService, std::mem::take(&mut batch));
        }
    }
    index.apply_batch(WatchedKind::VirtualService, batch);
    index.apply(WatchedKind::Gateway, json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "public", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*/*"]}]}}));
    let mut batch = Vec::new();
    for i in 0..n {
        let ns = format!("team-{}", i % 200);
        batch.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"name": "http", "port": 80}]}}));
        if batch.len() == 500 {
            index.apply_batch(WatchedKind::Service, std::mem::take(&mut batch));
        }
    }
    index.apply_batch(WatchedKind::Service, batch);
    println!("ingested {n} in {:?}; {}", started.elapsed(), rss());
    let started = Instant::now();
    let report = index.report()?;
    println!(
        "check in {:?}: {} findings; {}",
        started.elapsed(),
        report["findings"].as_array().map_or(0, |f| f.len()),
        rss()
    );
    Ok(())
}
