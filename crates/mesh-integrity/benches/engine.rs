//! Benchmark of the integrity engine on synthetic meshes (`harness = false`: prints figures).
//!
//! ```text
//! cargo bench -p mesh-integrity --bench engine                 # 1k, 10k and 100k VirtualServices
//! cargo bench -p mesh-integrity --bench engine -- 1000 10000   # chosen sizes
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it does a tiny smoke run only.
//! `MESH_BENCH_BROKEN=100` makes every VirtualService route to a missing Service (a report with
//! one finding per VirtualService) instead of 1%. `MESH_BENCH_MESHSERVICES=M` adds M MeshServices
//! (none by default, so that the default mesh and its figures stay as they were).
//!
//! The mesh for N VirtualServices: N/10 Gateways (each serving `*.gwK.example.com`), N Services,
//! N/10 DestinationRules (subset v1) and N/10 ServiceEntries, over 100 namespaces. Half the
//! VirtualServices are bound to a gateway, half to the mesh; each routes to its own Service on
//! port 80 (every tenth through subset v1), and 1% route to a Service that does not exist.
//! Figures: batch ingest (projection + SQLite, one transaction), full check, and the incremental
//! check of one watch event (upsert of a changed VirtualService + `findings_for` it), median and
//! p99; the time `finding_counts` takes; memory per object from the Rust heap (counting allocator) plus SQLite's
//! (its allocations routed through a counting allocator too, `SQLITE_CONFIG_MALLOC`).
//!
//! MeshServices (`MESH_BENCH_MESHSERVICES=M`): MeshService `msJ` over the same 100 namespaces, the
//! even ones on the bench's Gateway `istio-system/gwK` (K = J mod the Gateway count) claiming
//! `msJ.gwK.example.com`, the odd ones mesh-only claiming `msJ.mesh.example.com`, port 80. Every tenth
//! also claims the host of VirtualService `vsJ` on its Gateway (when J < N): an MSH0201 conflict, lost by
//! the VirtualService when J is a multiple of 20 (the MeshService is older), else by the MeshService.
//!
//! `MESH_BENCH_SHARED_SELECTOR=1`: every Gateway selects `istio: ingressgateway` (as in most
//! installations) instead of a workload of its own, so that the rules comparing the Gateways of
//! one workload (IST0145, MSH0101, MSH0201's Gateway claims) see all of them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use mesh_integrity::{Engine, ObjectKey, SourceObject};
use serde_json::{Value, json};

struct Counting;
static HEAP: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes SQLite holds, counted by the allocator below: SQLite's own count (`sqlite3_memory_used`)
/// is compiled out of this workspace's builds (`SQLITE_DEFAULT_MEMSTATUS=0` in
/// `.cargo/config.toml`), since keeping it takes a global mutex on every allocation.
static SQLITE_HEAP: AtomicIsize = AtomicIsize::new(0);

/// Each SQLite allocation starts with its size, in a header that keeps the 8-byte alignment
/// SQLite needs.
const SQLITE_HEADER: usize = 16;

fn sqlite_layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(SQLITE_HEADER)?, SQLITE_HEADER).ok()
}

unsafe extern "C" fn sqlite_malloc(n: c_int) -> *mut c_void {
    let Some((size, layout)) = usize::try_from(n)
        .ok()
        .and_then(|size| Some((size, sqlite_layout(size)?)))
    else {
        return ptr::null_mut();
    };
    // SAFETY: a non-zero layout; the header is written inside the allocation.
    unsafe {
        let base = System.alloc(layout);
        if base.is_null() {
            return ptr::null_mut();
        }
        base.cast::<usize>().write(size);
        SQLITE_HEAP.fetch_add(size as isize, Ordering::Relaxed);
        base.add(SQLITE_HEADER).cast()
    }
}

/// The allocation's start and its size as requested, for a pointer `sqlite_malloc` returned.
unsafe fn sqlite_block(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: `p` is SQLITE_HEADER bytes into a block whose header holds its size.
    unsafe {
        let base = p.cast::<u8>().sub(SQLITE_HEADER);
        (base, base.cast::<usize>().read())
    }
}

unsafe extern "C" fn sqlite_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` came from `sqlite_malloc` or `sqlite_realloc`, with this layout.
    unsafe {
        let (base, size) = sqlite_block(p);
        if let Some(layout) = sqlite_layout(size) {
            SQLITE_HEAP.fetch_sub(size as isize, Ordering::Relaxed);
            System.dealloc(base, layout);
        }
    }
}

unsafe extern "C" fn sqlite_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as `sqlite_malloc`.
        return unsafe { sqlite_malloc(n) };
    }
    let Ok(new_size) = usize::try_from(n) else {
        return ptr::null_mut();
    };
    // SAFETY: `p` came from `sqlite_malloc` or `sqlite_realloc`; on failure it stays valid.
    unsafe {
        let (base, old_size) = sqlite_block(p);
        let Some(old_layout) = sqlite_layout(old_size) else {
            return ptr::null_mut();
        };
        let moved = System.realloc(base, old_layout, new_size + SQLITE_HEADER);
        if moved.is_null() {
            return ptr::null_mut();
        }
        moved.cast::<usize>().write(new_size);
        SQLITE_HEAP.fetch_add(new_size as isize - old_size as isize, Ordering::Relaxed);
        moved.add(SQLITE_HEADER).cast()
    }
}

unsafe extern "C" fn sqlite_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: as `sqlite_free`.
    let (_, size) = unsafe { sqlite_block(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn sqlite_roundup(n: c_int) -> c_int {
    n.saturating_add(7) & !7
}

unsafe extern "C" fn sqlite_init(_: *mut c_void) -> c_int {
    rusqlite::ffi::SQLITE_OK
}

unsafe extern "C" fn sqlite_shutdown(_: *mut c_void) {}

/// Routes SQLite's allocations through the counting functions above. Must run before any
/// connection opens (SQLite refuses a new allocator once it is initialised).
fn count_sqlite_memory() {
    let methods = rusqlite::ffi::sqlite3_mem_methods {
        xMalloc: Some(sqlite_malloc),
        xFree: Some(sqlite_free),
        xRealloc: Some(sqlite_realloc),
        xSize: Some(sqlite_size),
        xRoundup: Some(sqlite_roundup),
        xInit: Some(sqlite_init),
        xShutdown: Some(sqlite_shutdown),
        pAppData: ptr::null_mut(),
    };
    // SAFETY: SQLite copies the methods; nothing has initialised SQLite yet in this process.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const rusqlite::ffi::sqlite3_mem_methods,
        )
    };
    assert_eq!(
        rc,
        rusqlite::ffi::SQLITE_OK,
        "sqlite3_config(SQLITE_CONFIG_MALLOC)"
    );
}

fn sqlite_memory() -> i64 {
    SQLITE_HEAP.load(Ordering::Relaxed) as i64
}

/// Percentage of VirtualServices routing to a Service that does not exist (`MESH_BENCH_BROKEN`,
/// default 1): 100 gives one finding per VirtualService, to measure reports with many findings.
fn broken_percent() -> usize {
    std::env::var("MESH_BENCH_BROKEN")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
}

/// MeshServices added to the mesh (`MESH_BENCH_MESHSERVICES`, default 0: the operator always has
/// some, and with one present `meshservice-host-claim-lost` runs on every VirtualService event).
fn meshservice_count() -> usize {
    std::env::var("MESH_BENCH_MESHSERVICES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Whether every Gateway selects one workload (`MESH_BENCH_SHARED_SELECTOR=1`).
fn shared_selector() -> bool {
    std::env::var("MESH_BENCH_SHARED_SELECTOR").is_ok_and(|v| v == "1")
}

/// MeshService `j` of a mesh of `n` VirtualServices (see the module documentation).
fn meshservice(j: usize, n: usize, n_gw: usize) -> Value {
    let ns = format!("ns{}", j % 100);
    let on_gateway = j.is_multiple_of(2);
    let g = j % n_gw;
    let mut hosts = if on_gateway {
        vec![format!("ms{j}.gw{g}.example.com")]
    } else {
        vec![format!("ms{j}.mesh.example.com")]
    };
    // VirtualService j is bound to gateway j mod n_gw when j is even (see `vs`): same gateway, same host
    let conflicting = j.is_multiple_of(10) && j < n;
    if conflicting {
        hosts.push(format!("vs{j}.gw{g}.example.com"));
    }
    // VirtualServices are created 2024-01-01: older MeshServices win, younger ones lose
    let created = if conflicting && j.is_multiple_of(20) {
        "2023-01-01T00:00:00Z"
    } else {
        "2025-01-01T00:00:00Z"
    };
    let mut spec = json!({"serviceName": format!("ms{j}"), "hosts": hosts,
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "HTTP"}]});
    if on_gateway {
        spec["gateway"] = json!({"name": format!("gw{g}"), "namespace": "istio-system"});
    }
    json!({"apiVersion": "mesh.istio.operator/v1alpha1", "kind": "MeshService",
        "metadata": {"name": format!("ms{j}"), "namespace": ns, "creationTimestamp": created},
        "spec": spec})
}

fn vs(i: usize, n_gw: usize, variant: usize) -> Value {
    let ns = format!("ns{}", i % 100);
    let mut dest = json!({"host": format!("svc{i}"), "port": {"number": 80}});
    if i.is_multiple_of(10) {
        dest["subset"] = json!("v1");
    }
    if i % 100 >= 100 - broken_percent().min(100) {
        dest["host"] = json!(format!("missing{i}"));
    }
    if variant > 0 {
        dest["port"] = json!({"number": 80 + (variant % 2) as u32});
    }
    let (hosts, gateways) = if i.is_multiple_of(2) && n_gw > 0 {
        let g = i % n_gw;
        (
            json!([format!("vs{i}.gw{g}.example.com")]),
            json!([format!("istio-system/gw{g}")]),
        )
    } else {
        (json!([format!("vs{i}.mesh.example.com")]), json!([]))
    };
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": format!("vs{i}"), "namespace": ns, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"hosts": hosts, "gateways": gateways,
                 "http": [{"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": dest}]}]}})
}

fn mesh(n: usize) -> Vec<Value> {
    let n_gw = (n / 10).max(1);
    let shared = shared_selector();
    let mut out = Vec::with_capacity(n * 2 + n / 5 + n_gw);
    for g in 0..n_gw {
        out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": format!("gw{g}"), "namespace": "istio-system"},
            "spec": {"selector": {"istio": if shared { "ingressgateway".to_string() } else { format!("ingress{g}") }},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [format!("*.gw{g}.example.com")]}]}}));
    }
    for i in 0..n {
        let ns = format!("ns{}", i % 100);
        out.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{i}"), "namespace": ns, "labels": {"app": format!("svc{i}")}},
            "spec": {"selector": {"app": format!("svc{i}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}));
        if i.is_multiple_of(10) {
            out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": format!("svc{i}"), "namespace": ns},
                "spec": {"host": format!("svc{i}"), "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
            out.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                "metadata": {"name": format!("ext{i}"), "namespace": ns},
                "spec": {"hosts": [format!("ext{i}.example.org")], "exportTo": ["."],
                         "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}], "resolution": "DNS"}}));
        }
        out.push(vs(i, n_gw, 0));
    }
    for j in 0..meshservice_count() {
        out.push(meshservice(j, n, n_gw));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Per analysis, the median and p99 of `findings_for_profiled` over `keys`.
fn targeted_medians(engine: &Engine, keys: &[ObjectKey]) -> String {
    let mut by_analysis: Vec<(&str, Vec<Duration>)> = Vec::new();
    for key in keys {
        let (_, timings) = engine.findings_for_profiled(key).expect("profile");
        for (analysis, took) in timings {
            match by_analysis.iter_mut().find(|(a, _)| *a == analysis) {
                Some((_, all)) => all.push(took),
                None => by_analysis.push((analysis, vec![took])),
            }
        }
    }
    let medians: Vec<String> = by_analysis
        .iter_mut()
        .map(|(analysis, all)| {
            all.sort();
            let median = percentile(all, 0.5).as_secs_f64() * 1e6;
            let p99 = percentile(all, 0.99).as_secs_f64() * 1e6;
            format!("{analysis} {median:.1}/{p99:.1}")
        })
        .collect();
    medians.join(", ")
}

fn run(n: usize, events: usize) {
    let heap0 = HEAP.load(Ordering::Relaxed);
    let objects = mesh(n);
    let heap_values = HEAP.load(Ordering::Relaxed) - heap0;
    let count = objects.len();
    let json_bytes: usize = objects.iter().map(|o| o.to_string().len()).sum();
    // the input values are consumed (and freed) by the ingest: what remains allocated is the engine
    let heap_input = HEAP.load(Ordering::Relaxed);
    let sqlite_before = sqlite_memory();
    let mut engine = Engine::open_in_memory().expect("engine");
    let started = Instant::now();
    let stats = engine
        .ingest_batch(objects.into_iter().map(SourceObject::new))
        .expect("ingest");
    let ingest = started.elapsed();
    let started = Instant::now();
    let report = engine.check().expect("check");
    let check = started.elapsed();
    let summary = (report.summary.total, report.summary.by_code.clone());
    let mut slowest: Vec<(f64, String)> = report
        .durations
        .by_rule_ms
        .iter()
        .map(|(k, v)| (*v, k.clone()))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    if std::env::var_os("MESH_BENCH_PROFILE").is_some() {
        println!("  slowest analyses: {:?}", &slowest[..slowest.len().min(6)]);
    }
    drop(report);
    let started = Instant::now();
    let counts = engine.finding_counts().expect("finding_counts");
    let counting = started.elapsed();
    let heap_engine = HEAP.load(Ordering::Relaxed) - heap_input + heap_values;
    let sqlite_engine = sqlite_memory() - sqlite_before;

    let n_gw = (n / 10).max(1);
    let mut times = Vec::with_capacity(events);
    let mut upserts = Vec::with_capacity(events);
    for e in 0..events {
        let i = (e * 7919) % n;
        let value = vs(i, n_gw, e + 1);
        let key = ObjectKey::virtual_service(&format!("ns{}", i % 100), &format!("vs{i}"));
        let started = Instant::now();
        engine.upsert(SourceObject::new(value)).expect("upsert");
        upserts.push(started.elapsed());
        let findings = engine.findings_for(&key).expect("findings_for");
        times.push(started.elapsed());
        std::hint::black_box(findings);
    }
    if std::env::var_os("MESH_BENCH_PROFILE").is_some() {
        // one call is too noisy to read: the median per analysis over the first 400 objects of a
        // kind (one by one, as events come: a different object each time)
        let virtual_services: Vec<ObjectKey> = (0..400.min(n))
            .map(|i| ObjectKey::virtual_service(&format!("ns{}", i % 100), &format!("vs{i}")))
            .collect();
        let mesh_services: Vec<ObjectKey> = (0..400.min(meshservice_count()))
            .map(|j| ObjectKey::mesh_service(&format!("ns{}", j % 100), &format!("ms{j}")))
            .collect();
        let gateways: Vec<ObjectKey> = (0..400.min(n / 10))
            .map(|g| ObjectKey::gateway("istio-system", &format!("gw{g}")))
            .collect();
        for (kind, keys) in [
            ("VirtualService", virtual_services),
            ("MeshService", mesh_services),
            ("Gateway", gateways),
        ] {
            if !keys.is_empty() {
                println!(
                    "  targeted analyses of a {kind} (median/p99 us): {}",
                    targeted_medians(&engine, &keys)
                );
            }
        }
    }
    times.sort();
    upserts.sort();
    let per_object = (heap_engine as f64 + sqlite_engine as f64) / count as f64;
    println!(
        "N_VS={n} objects={count} ({} by kind: {:?})",
        stats.total, stats.by_kind
    );
    println!("  input JSON: {:.1} MB", json_bytes as f64 / 1e6);
    println!(
        "  batch ingest:        {:>8.1} ms",
        ingest.as_secs_f64() * 1e3
    );
    println!(
        "  full check:          {:>8.1} ms  ({} findings: {:?})",
        check.as_secs_f64() * 1e3,
        summary.0,
        summary.1
    );
    println!(
        "  finding counts:      {:>8.1} ms  ({counts:?})",
        counting.as_secs_f64() * 1e3
    );
    println!(
        "  ingest + check:      {:>8.1} ms",
        (ingest + check).as_secs_f64() * 1e3
    );
    println!(
        "  incremental event (upsert + findings_for), {} events: median {:.1} us, p99 {:.1} us",
        events,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "    of which upsert: median {:.1} us, p99 {:.1} us",
        percentile(&upserts, 0.5).as_secs_f64() * 1e6,
        percentile(&upserts, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "  memory: Rust heap {:.1} MB + SQLite {:.1} MB = {:.0} B/object",
        heap_engine as f64 / 1e6,
        sqlite_engine as f64 / 1e6,
        per_object
    );
}

fn main() {
    count_sqlite_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if !benchmarking {
        println!("smoke run (use `cargo bench` for the real figures)");
        run(200, 20);
        return;
    }
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    // MESH_BENCH_EVENTS: more events, for profiling the incremental path (default 1000)
    let events = std::env::var("MESH_BENCH_EVENTS")
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(1000);
    for n in sizes {
        run(n, events);
    }
}
