//! `check` at scale: generates a directory of N objects (a realistic mix, one file per 100
//! objects, a few deliberate faults) and runs the built binary on it, measuring wall time and
//! peak RSS of the process.
//!
//! * `cargo bench -p istio-integrity-operator --bench check_scale` — the real figures: 10k and
//!   100k objects, 3 runs each, medians (targets: 10k ≤ 0.5 s and ≤ 100 MB; 100k ≤ 3 s).
//! * `cargo bench ... -- 25000` — other sizes; `CHECK_SCALE_KEEP=DIR` also keeps each input in
//!   `DIR/<size>`, for profiling `check` on it.
//! * Under `cargo test --all-targets` it runs with no `--bench` flag: a 300-object smoke run
//!   that checks the generator and the exit code, in well under a second.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_istio-integrity-operator");

/// Objects per generated "team": 1 Gateway, 3 Services, 3 VirtualServices, 3 DestinationRules.
const UNIT: usize = 10;
/// Objects per file.
const PER_FILE: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|arg| arg == "--bench");
    let sizes: Vec<usize> = args.iter().filter_map(|arg| arg.parse().ok()).collect();
    let (sizes, runs) = match (full, sizes.is_empty()) {
        (false, _) => (vec![300], 1),
        (true, true) => (vec![10_000, 100_000], 3),
        (true, false) => (sizes, 3),
    };

    let mut table = String::from(
        "| objects | files | findings | wall (median) | wall (each run) | CPU user+sys (median) | peak RSS (max) |\n|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for size in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        // CHECK_SCALE_KEEP=DIR: the generated input also goes to DIR/<size> and stays, for
        // profiling `check` on it
        if let Some(keep) = std::env::var_os("CHECK_SCALE_KEEP") {
            let kept = Path::new(&keep).join(size.to_string());
            std::fs::create_dir_all(&kept).expect("CHECK_SCALE_KEEP directory");
            generate(&kept, size);
        }
        let (files, faults) = generate(dir.path(), size);
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let mut peak_kib = 0;
        let mut findings = 0;
        for _ in 0..runs {
            let measured = measure(dir.path());
            assert_eq!(measured.exit_code, 1, "the generated faults give exit 1");
            walls.push(measured.wall);
            cpus.push(measured.cpu);
            peak_kib = peak_kib.max(measured.peak_rss_kib);
            findings = measured.findings;
        }
        assert!(
            findings >= faults,
            "{findings} findings for {faults} faults"
        );
        // The median, not the best: one lucky run on a shared machine says little.
        let median_wall = median(&walls);
        let median_cpu = median(&cpus);
        let each: Vec<String> = walls
            .iter()
            .map(|w| format!("{:.3} s", w.as_secs_f64()))
            .collect();
        let _ = writeln!(
            table,
            "| {size} | {files} | {findings} | {:.3} s | {} | {:.3} s | {:.1} MB |",
            median_wall.as_secs_f64(),
            each.join(", "),
            median_cpu.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
    println!(
        "check_scale: `istio-integrity-operator check DIR --format json > /dev/null`, {runs} run(s) per size"
    );
    print!("{table}");
    // Wall time depends on what else the machine runs; record it so the figures can be judged.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average (1, 5, 15 min) after the runs: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// The middle value (the upper one of the middle two for an even count).
fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

struct Measured {
    exit_code: i32,
    wall: Duration,
    peak_rss_kib: i64,
    /// User + system CPU time of the child: what the run costs without other processes' load.
    cpu: Duration,
    findings: usize,
}

/// Runs `check DIR --format json`, counting findings from stdout, and reads the child's peak RSS
/// from wait4(2), which reports it for exactly this process.
fn measure(dir: &Path) -> Measured {
    let started = Instant::now();
    // Reaped below by wait4(2) rather than Child::wait, to get the child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(BIN)
        .args(["check", "--format", "json", "--fail-on", "error"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped stdout");
    // Read stdout before waiting, so the child never blocks on a full pipe.
    let mut output = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut output).expect("read the report");
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data that wait4 fills in; pid is our own unwaited child (std's
    // Child handle was consumed above without waiting, so nobody else reaps it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(reaped, pid, "wait4 reaped the child");
    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let report: serde_json::Value = serde_json::from_slice(&output).expect("the JSON report");
    let findings = report["findings"].as_array().map_or(0, Vec::len);
    let seconds = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        exit_code,
        wall,
        peak_rss_kib: usage.ru_maxrss,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        findings,
    }
}

/// Writes `size` objects (rounded down to whole units) and returns (files, deliberate faults).
/// Every 50th VirtualService routes to a host no Service serves (IST0101).
fn generate(dir: &Path, size: usize) -> (usize, usize) {
    let units = (size / UNIT).max(1);
    let mut file = String::new();
    let mut in_file = 0;
    let mut files = 0;
    let mut faults = 0;
    let flush = |file: &mut String, files: &mut usize| {
        std::fs::write(
            dir.join(format!("objects-{:05}.yaml", *files)),
            file.as_bytes(),
        )
        .expect("write");
        file.clear();
        *files += 1;
    };
    for unit in 0..units {
        let namespace = format!("team-{}", unit / 10);
        let gateway = format!("gw-{unit}");
        let services: Vec<String> = (0..3).map(|i| format!("svc-{unit}-{i}")).collect();
        let hosts: Vec<String> = services
            .iter()
            .map(|s| format!("{s}.example.com"))
            .collect();
        let _ = write!(
            file,
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {gateway}\n  namespace: {namespace}\nspec:\n  selector:\n    istio: ingressgateway-{unit}\n  servers:\n    - port: {{number: 80, name: http, protocol: HTTP}}\n      hosts: [{}]\n---\n",
            hosts.join(", ")
        );
        for (i, service) in services.iter().enumerate() {
            let fault = (unit * 3 + i) % 50 == 49;
            faults += usize::from(fault);
            let destination = if fault {
                format!("{service}-gone")
            } else {
                service.clone()
            };
            let _ = write!(
                file,
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {service}\n  namespace: {namespace}\n  labels: {{app: {service}, team: \"{namespace}\"}}\nspec:\n  selector: {{app: {service}}}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {service}\n  namespace: {namespace}\nspec:\n  hosts: [{host}]\n  gateways: [{gateway}]\n  http:\n    - match: [{{uri: {{prefix: /v2}}}}]\n      route:\n        - destination: {{host: {destination}, subset: v2}}\n    - route:\n        - destination: {{host: {destination}, subset: v1}}\n          weight: 90\n        - destination: {{host: {destination}, subset: v2}}\n          weight: 10\n      timeout: 3s\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {service}\n  namespace: {namespace}\nspec:\n  host: {destination}\n  trafficPolicy:\n    connectionPool:\n      http: {{http1MaxPendingRequests: 100}}\n  subsets:\n    - name: v1\n      labels: {{version: v1}}\n    - name: v2\n      labels: {{version: v2}}\n---\n",
                host = hosts[i],
            );
        }
        in_file += UNIT;
        if in_file >= PER_FILE {
            flush(&mut file, &mut files);
            in_file = 0;
        }
    }
    if !file.is_empty() {
        flush(&mut file, &mut files);
    }
    (files, faults)
}
