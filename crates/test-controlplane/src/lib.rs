//! The e2e test harness: starts a real etcd, kube-apiserver and kube-controller-manager (built by
//! `cargo xtask controlplane` from the upstream Go modules) on loopback, installs our CRDs and Istio's,
//! creates the `istio-system` namespace as an Istio install would, and hands tests an admin
//! `kube::Client`; nothing of the Kubernetes API is mocked.
//!
//! One control plane is shared by all tests of a test binary ([`shared`]); each test works in its own
//! namespace ([`ControlPlane::namespace`]) and builds its own clients, because a `kube::Client` is
//! bound to the tokio runtime it was created on and `#[tokio::test]` makes one runtime per test.
//!
//! ```no_run
//! # async fn example() -> Result<(), test_controlplane::Error> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! let cp = test_controlplane::shared().await?;
//! let ns = cp.namespace("configmaps-are-stored").await?;
//! let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(cp.client()?, ns.name());
//! # Ok(()) }
//! ```
//!
//! Processes die with the test process, however it ends (see `process.rs`). Set
//! `IIO_KEEP_CONTROLPLANE=1` to keep the temporary directory (logs, certificates, etcd data) after a
//! control plane stops.

mod crds;
mod pki;
mod process;
mod supervise;
pub mod versions;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crds::{CrdFileError, InstallError, load_crds, yaml_files};
use pki::{Pki, PkiFiles};
use process::Process;
use supervise::{Restart, Supervisor};
pub use versions::DIR_ENV;

/// Set (to anything) to keep a stopped control plane's temporary directory, and its logs.
pub const KEEP_ENV: &str = "IIO_KEEP_CONTROLPLANE";
/// Prefix of the temporary directories; followed by the owning process id.
const TMP_PREFIX: &str = "iio-controlplane-";
/// The namespace an Istio install creates; it exists from the start, as Istio's CRDs do.
pub const ISTIO_SYSTEM: &str = "istio-system";
/// The range Service cluster IPs are allocated from.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";
/// Issuer of the service-account tokens the apiserver signs.
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// How long a stopping process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines shown for each process when a test fails.
const FAILURE_LOG_LINES: usize = 40;

/// Why the control plane could not be started or used. Messages name the log directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `cargo xtask controlplane` has not been run (or `IIO_CONTROLPLANE_DIR` points elsewhere).
    #[error(
        "the control plane is not built: {missing} not found in {}; run `cargo xtask controlplane` \
         (or set {DIR_ENV} to a directory it built)",
        dir.display()
    )]
    NotBuilt { dir: PathBuf, missing: String },
    /// A CRD file is unreadable or malformed.
    #[error(transparent)]
    CrdFile(#[from] CrdFileError),
    /// Generating the CA, certificates or keys failed.
    #[error("generating certificates")]
    Certificates(#[from] rcgen::Error),
    /// A file or process operation failed.
    #[error("{what} (control plane logs: {})", logs.display())]
    Io {
        what: String,
        logs: PathBuf,
        source: std::io::Error,
    },
    /// A control plane process died.
    #[error("{process} exited with {status} while {phase}; last lines of {}:\n{tail}", log.display())]
    Exited {
        process: &'static str,
        phase: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    /// A kubectl command of the harness exited with an error.
    #[error("kubectl {args} failed: {stderr}")]
    Kubectl { args: String, stderr: String },
    /// A readiness probe did not succeed in time.
    #[error("{what} not ready after {timeout:?} (last probe: {last}); control plane logs: {}", logs.display())]
    NotReady {
        what: String,
        timeout: Duration,
        last: String,
        logs: PathBuf,
    },
    /// An API call of the harness failed.
    #[error("{what} (control plane logs: {})", logs.display())]
    Kube {
        what: String,
        logs: PathBuf,
        source: kube::Error,
    },
    /// The generated kubeconfig could not be loaded.
    #[error("loading the kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    /// Our CRDs or Istio's were refused or never became Established.
    #[error("installing CRDs (control plane logs: {})", logs.display())]
    Crds { logs: PathBuf, source: InstallError },
    /// [`shared`] failed; the first failure is repeated to every test of the binary.
    #[error("the shared control plane of this test binary failed to start: {0}")]
    Shared(String),
}

/// What to start; [`Options::from_env`] gives the defaults every test uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Holds `bin/{etcd,kube-apiserver,kube-controller-manager,kubectl}` and Istio's CRDs.
    pub controlplane_dir: PathBuf,
    /// CRD files, or directories whose `*.yaml` files hold CRDs, installed before `start` returns.
    pub crds: Vec<PathBuf>,
    /// Limit for each readiness wait (etcd, apiserver, CRDs).
    pub timeout: Duration,
}

impl Options {
    /// The control plane in `$IIO_CONTROLPLANE_DIR`, else `target/controlplane/<versions>/` of this
    /// workspace; our CRDs from `deploy/crds/` and Istio's from the control plane directory.
    pub fn from_env() -> Self {
        let root = versions::workspace_root();
        let controlplane_dir = std::env::var_os(DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| versions::default_dir(&root));
        let crds = vec![
            root.join("deploy").join("crds"),
            controlplane_dir.join(versions::ISTIO_CRDS_FILE),
        ];
        Self {
            controlplane_dir,
            crds,
            timeout: Duration::from_secs(90),
        }
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.controlplane_dir.join("bin").join(name)
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::from_env()
    }
}

/// Process ids of the running control plane, for tests of the harness itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pids {
    pub etcd: Option<u32>,
    pub apiserver: Option<u32>,
    pub controller_manager: Option<u32>,
}

#[derive(Default)]
struct Processes {
    etcd: Option<Process>,
    apiserver: Option<Process>,
    controller_manager: Option<Process>,
}

impl Processes {
    /// Stops in reverse dependency order, so nothing logs errors about a peer that vanished first.
    fn stop_all(&mut self) {
        for process in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut process = process;
            process.stop(STOP_GRACE);
        }
    }

    fn logs(&self) -> Vec<(&'static str, PathBuf)> {
        [&self.etcd, &self.apiserver, &self.controller_manager]
            .into_iter()
            .flatten()
            .map(|p| (p.name(), p.log().to_path_buf()))
            .collect()
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager. Dropping it stops them and removes
/// its temporary directory.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    options: Options,
    etcd_args: Vec<String>,
    apiserver_args: Vec<String>,
    etcd_client_port: u16,
    apiserver_port: u16,
    kubeconfig: PathBuf,
    config: kube::Config,
    processes: Arc<Mutex<Processes>>,
    supervisor: Supervisor,
    startup: Duration,
}

/// What one start attempt produced; becomes a [`ControlPlane`] together with its directory.
struct Started {
    etcd_args: Vec<String>,
    apiserver_args: Vec<String>,
    controller_manager_args: Vec<String>,
    etcd_client_port: u16,
    apiserver_port: u16,
    kubeconfig: PathBuf,
    config: kube::Config,
    processes: Processes,
}

async fn start_processes(
    options: &Options,
    root: &Path,
    files: &PkiFiles,
    crds: &[CustomResourceDefinition],
) -> Result<Started, Error> {
    let io_error = |what: &str| {
        let what = what.to_string();
        move |source| Error::Io {
            what,
            logs: root.into(),
            source,
        }
    };
    let [etcd_client_port, etcd_peer_port, apiserver_port] =
        free_ports().map_err(io_error("finding free ports"))?;
    // A failed attempt may have left a member with other peer URLs behind.
    let etcd_data = root.join("etcd");
    if etcd_data.exists() {
        std::fs::remove_dir_all(&etcd_data)
            .map_err(io_error("removing etcd data of a failed attempt"))?;
    }
    let kubeconfig = root.join("kubeconfig");
    write_kubeconfig(&kubeconfig, apiserver_port, files)
        .map_err(io_error("writing the kubeconfig"))?;
    let config = load_config(&kubeconfig).await?;

    let etcd_args = etcd_args(&etcd_data, etcd_client_port, etcd_peer_port);
    let apiserver_args = apiserver_args(root, files, etcd_client_port, apiserver_port);

    // Each process is stopped by its Drop if a later step fails.
    let mut processes = Processes::default();
    let mut etcd = spawn(options, "etcd", &etcd_args, root)?;
    wait_ready("etcd", options.timeout, root, &mut etcd, "starting", || {
        etcd_ready(etcd_client_port)
    })
    .await?;
    processes.etcd = Some(etcd);

    let mut apiserver = spawn(options, "kube-apiserver", &apiserver_args, root)?;
    wait_ready(
        "kube-apiserver",
        options.timeout,
        root,
        &mut apiserver,
        "starting",
        || apiserver_ready(&config),
    )
    .await?;
    processes.apiserver = Some(apiserver);

    let admin = Client::try_from(config.clone()).map_err(|source| Error::Kube {
        what: "building the admin client".into(),
        logs: root.into(),
        source,
    })?;
    crds::install(admin.clone(), crds, options.timeout)
        .await
        .map_err(|source| Error::Crds {
            logs: root.into(),
            source,
        })?;
    // An Istio install brings this namespace; shared Gateways and the examples live in it.
    let istio_system = Namespace {
        metadata: ObjectMeta {
            name: Some(ISTIO_SYSTEM.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin)
        .create(&PostParams::default(), &istio_system)
        .await
        .map_err(|source| Error::Kube {
            what: format!("creating namespace {ISTIO_SYSTEM}"),
            logs: root.into(),
            source,
        })?;

    // Started after the CRDs exist: the garbage collector discovers resource types at start and
    // only every 30 s afterwards, and must watch MeshServices from the first test on.
    let controller_manager_args = controller_manager_args(&kubeconfig, files);
    processes.controller_manager = Some(spawn(
        options,
        "kube-controller-manager",
        &controller_manager_args,
        root,
    )?);

    Ok(Started {
        etcd_args,
        apiserver_args,
        controller_manager_args,
        etcd_client_port,
        apiserver_port,
        kubeconfig,
        config,
        processes,
    })
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir.path())
            .field("apiserver", &self.apiserver_url())
            .field("etcd", &self.etcd_url())
            .finish_non_exhaustive()
    }
}

/// The control plane shared by every test of this test binary, started on first use.
///
/// Its processes live until the test process exits (they get SIGKILL from the kernel then; the
/// temporary directory is removed by an exit hook). Use [`ControlPlane::start`] instead for tests
/// that restart or break the control plane.
pub async fn shared() -> Result<&'static ControlPlane, Error> {
    static SHARED: tokio::sync::OnceCell<Result<ControlPlane, String>> =
        tokio::sync::OnceCell::const_new();
    // The failure is stored, not retried: every test of the binary would otherwise wait for a start
    // that fails the same way.
    let started = SHARED
        .get_or_init(|| async {
            let control_plane = ControlPlane::start()
                .await
                .map_err(|error| with_causes(&error))?;
            // A static is never dropped: the exit hook removes the temporary directory.
            process::register_dir(control_plane.dir());
            eprintln!(
                "shared control plane ready in {:.1} s at {}; logs in {}",
                control_plane.startup_time().as_secs_f64(),
                control_plane.apiserver_url(),
                control_plane.dir().display()
            );
            Ok(control_plane)
        })
        .await;
    started
        .as_ref()
        .map_err(|message| Error::Shared(message.clone()))
}

impl ControlPlane {
    /// Starts a control plane with [`Options::from_env`].
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::from_env()).await
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager, waits for the apiserver's `/readyz`,
    /// installs the CRDs and waits until they are Established.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let started = Instant::now();
        for name in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ] {
            if !options.binary(name).is_file() {
                return Err(Error::NotBuilt {
                    dir: options.controlplane_dir.join("bin"),
                    missing: name.into(),
                });
            }
        }
        let crds = load_all_crds(&options.crds)?;
        if std::env::var_os(KEEP_ENV).is_none() {
            sweep_stale_dirs();
        }
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|source| Error::Io {
                what: "creating a temporary directory".into(),
                logs: std::env::temp_dir(),
                source,
            })?;
        let pki = Pki::generate()?;
        let files = pki
            .write(&dir.path().join("pki"))
            .map_err(|source| Error::Io {
                what: "writing certificates".into(),
                logs: dir.path().into(),
                source,
            })?;

        // Free ports are found by binding port 0 and releasing it, so another process may grab one
        // before our child binds it; such a start is retried with fresh ports.
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match start_processes(&options, dir.path(), &files, &crds).await {
                Err(Error::Exited { ref tail, .. })
                    if attempt < 3 && tail.contains("address already in use") =>
                {
                    continue;
                }
                other => break other,
            }
        };
        let started_processes = match result {
            Ok(started_processes) => started_processes,
            Err(error) => {
                // Keep the logs the error message points to.
                dir.disable_cleanup(true);
                return Err(error);
            }
        };
        let Started {
            etcd_args,
            apiserver_args,
            controller_manager_args,
            etcd_client_port,
            apiserver_port,
            kubeconfig,
            config,
            processes,
        } = started_processes;
        let processes = Arc::new(Mutex::new(processes));
        let supervisor = Supervisor::start(
            Arc::clone(&processes),
            Restart {
                program: options.binary("kube-controller-manager"),
                args: controller_manager_args,
                log: dir.path().join("kube-controller-manager.log"),
            },
        );
        Ok(Self {
            dir,
            options,
            etcd_args,
            apiserver_args,
            etcd_client_port,
            apiserver_port,
            kubeconfig,
            config,
            processes,
            supervisor,
            startup: started.elapsed(),
        })
    }

    /// A new admin client (user in `system:masters`). Call it inside the test's own runtime.
    pub fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config.clone())
            .map_err(|source| self.kube_error("building the admin client", source))
    }

    /// The admin `kube::Config`, to build clients with other settings.
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// A kubeconfig file for the admin, usable with kubectl while the control plane runs.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubectl built with the control plane.
    pub fn kubectl(&self) -> PathBuf {
        self.options.binary("kubectl")
    }

    /// `kubectl apply --server-side -f <path>...` as the admin, as an install applies manifests
    /// (a directory applies every manifest in it). Blocks the calling thread until kubectl exits.
    pub fn kubectl_apply(&self, paths: &[&Path]) -> Result<(), Error> {
        let mut args = vec!["apply".to_string(), "--server-side".to_string()];
        for path in paths {
            args.push("-f".into());
            args.push(path.display().to_string());
        }
        let output = std::process::Command::new(self.kubectl())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&args)
            .output()
            .map_err(|source| Error::Io {
                what: "running kubectl".into(),
                logs: self.dir().into(),
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Kubectl {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }

    /// The temporary directory: logs (`*.log`), certificates (`pki/`), etcd data and the kubeconfig.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client_port)
    }

    /// From spawning etcd to the CRDs being Established and kube-controller-manager spawned.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Process ids, `None` for a process that is not running (e.g. during a restart).
    pub fn pids(&self) -> Pids {
        let processes = self.lock();
        Pids {
            etcd: processes.etcd.as_ref().map(Process::pid),
            apiserver: processes.apiserver.as_ref().map(Process::pid),
            controller_manager: processes.controller_manager.as_ref().map(Process::pid),
        }
    }

    /// The last `lines` lines of each process's log, headed by the log's path.
    pub fn log_tail(&self, lines: usize) -> String {
        let logs = self.lock().logs();
        logs.iter()
            .map(|(name, path)| {
                format!(
                    "----- {name}: {} -----\n{}",
                    path.display(),
                    process::tail(path, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Creates a namespace named after the test, unique in this control plane.
    pub async fn namespace(&self, test_name: &str) -> Result<TestNamespace<'_>, Error> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = namespace_name(test_name, COUNTER.fetch_add(1, Ordering::Relaxed));
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client()?)
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| self.kube_error(format!("creating namespace {name}"), source))?;
        Ok(TestNamespace {
            control_plane: self,
            name,
        })
    }

    /// A client authenticated as ServiceAccount `namespace/name` with a token from the TokenRequest
    /// API (valid one hour). The ServiceAccount is created when missing; it has no permissions
    /// until the test binds some.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(self.kube_error(
                    format!("creating ServiceAccount {namespace}/{name}"),
                    source,
                ));
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| {
                self.kube_error(format!("requesting a token for {namespace}/{name}"), source)
            })?;
        let token = issued.status.map(|status| status.token).unwrap_or_default();
        let mut config = self.config.clone();
        // AuthInfo's token is a secrecy::SecretString, a crate kube does not re-export; its serde
        // form is a plain string, so the token goes in that way.
        config.auth_info = serde_json::from_value::<AuthInfo>(
            serde_json::json!({ "token": token }),
        )
        .map_err(|error| Error::Io {
            what: "building a token AuthInfo".into(),
            logs: self.dir().into(),
            source: error.into(),
        })?;
        Client::try_from(config)
            .map_err(|source| self.kube_error("building a ServiceAccount client", source))
    }

    /// A client that authenticates as the admin and impersonates `user` in `groups`, so requests are
    /// authorized as that user (`system:authenticated` is added by the apiserver).
    pub fn impersonated_client(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.into());
        config.auth_info.impersonate_groups =
            (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config)
            .map_err(|source| self.kube_error("building an impersonating client", source))
    }

    /// Stops kube-apiserver (SIGTERM) and starts it again on the same port, waiting for `/readyz`.
    /// Blocks the calling thread for up to a few seconds while the old process stops. Not for the
    /// [`shared`] control plane: other tests would see the outage.
    pub async fn restart_apiserver(&self) -> Result<(), Error> {
        {
            let mut processes = self.lock();
            if let Some(mut old) = processes.apiserver.take() {
                old.stop(STOP_GRACE);
            }
            processes.apiserver = Some(spawn(
                &self.options,
                "kube-apiserver",
                &self.apiserver_args,
                self.dir(),
            )?);
        }
        self.wait_running_ready(
            "kube-apiserver",
            "restarting",
            |p| p.apiserver.as_mut(),
            || apiserver_ready(&self.config),
        )
        .await
    }

    /// Stops etcd (SIGTERM) and starts it again on the same ports and data, waiting until both etcd
    /// and the apiserver are ready again. Not for the [`shared`] control plane.
    pub async fn restart_etcd(&self) -> Result<(), Error> {
        {
            let mut processes = self.lock();
            if let Some(mut old) = processes.etcd.take() {
                old.stop(STOP_GRACE);
            }
            processes.etcd = Some(spawn(&self.options, "etcd", &self.etcd_args, self.dir())?);
        }
        let port = self.etcd_client_port;
        self.wait_running_ready(
            "etcd",
            "restarting",
            |p| p.etcd.as_mut(),
            || etcd_ready(port),
        )
        .await?;
        self.wait_running_ready(
            "kube-apiserver",
            "reconnecting to etcd",
            |p| p.apiserver.as_mut(),
            || apiserver_ready(&self.config),
        )
        .await
    }

    /// Polls `probe` until it succeeds, failing early when the process (looked up under the lock on
    /// each round, as a restart may replace it) has exited.
    async fn wait_running_ready<Select, Probe, Fut>(
        &self,
        what: &'static str,
        phase: &str,
        select: Select,
        mut probe: Probe,
    ) -> Result<(), Error>
    where
        Select: Fn(&mut Processes) -> Option<&mut Process>,
        Probe: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + self.options.timeout;
        loop {
            let last = match probe().await {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            {
                let mut processes = self.lock();
                match select(&mut processes) {
                    Some(process) => check_running(process, phase)?,
                    None => {
                        return Err(Error::NotReady {
                            what: what.into(),
                            timeout: Duration::ZERO,
                            last: "not running".into(),
                            logs: self.dir().into(),
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: what.into(),
                    timeout: self.options.timeout,
                    last,
                    logs: self.dir().into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Processes> {
        // A panic while holding the lock leaves the processes themselves intact; keep using them.
        self.processes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kube_error(&self, what: impl Into<String>, source: kube::Error) -> Error {
        Error::Kube {
            what: what.into(),
            logs: self.dir().into(),
            source,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "control plane logs (a test failed):\n{}",
                self.log_tail(FAILURE_LOG_LINES)
            );
        }
        // First, or it would restart kube-controller-manager while everything stops.
        self.supervisor.stop();
        self.lock().stop_all();
        if std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("{KEEP_ENV} is set: keeping {}", self.dir().display());
        }
        process::unregister_dir(self.dir.path());
    }
}

/// A namespace for one test. When it is dropped, the tail of every control plane log is printed to
/// the test's captured output, which libtest shows only when the test failed. (With
/// `--nocapture` the tails are printed for every test.)
pub struct TestNamespace<'a> {
    control_plane: &'a ControlPlane,
    name: String,
}

impl TestNamespace<'_> {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        // A test that returns `Err` does not panic, so Drop cannot tell whether it failed. libtest
        // captures a test's output and shows it only when the test fails: printing always is how
        // every failure, panic or `Err`, comes with the control plane's logs.
        eprintln!(
            "control plane logs at the end of the test in namespace {}:\n{}",
            self.name,
            self.control_plane.log_tail(FAILURE_LOG_LINES)
        );
    }
}

/// `error: cause: cause …`, for the one message [`shared`] keeps and repeats.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        message.push_str(": ");
        message.push_str(&next.to_string());
        cause = next.source();
    }
    message
}

/// Removes temporary directories left by control planes whose process no longer exists (a test
/// process killed with SIGKILL cannot clean up after itself). Returns the removed directories.
pub fn sweep_stale_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(owner) = file_name
            .to_str()
            .and_then(|name| name.strip_prefix(TMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if !process_exists(owner) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence and permission; EPERM means it exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `<sanitized test name>-<n>`, a valid DNS-1123 label of at most 63 characters.
fn namespace_name(test_name: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let sanitized: String = test_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut base: String = sanitized
        .trim_matches('-')
        .chars()
        .take(63 - suffix.len())
        .collect();
    base.truncate(base.trim_end_matches('-').len());
    if base.is_empty() {
        base.push_str("test");
    }
    base + &suffix
}

fn load_all_crds(sources: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>, Error> {
    let mut all = Vec::new();
    for source in sources {
        let files = if source.is_dir() {
            yaml_files(source)?
        } else {
            vec![source.clone()]
        };
        for file in files {
            all.extend(load_crds(&file)?);
        }
    }
    Ok(all)
}

/// Three distinct free loopback ports, never handed out twice in this process.
fn free_ports() -> std::io::Result<[u16; 3]> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut handed_out = HANDED_OUT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Hold every listener until all ports are chosen, so the kernel cannot return one twice.
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
        if listeners.len() > 64 {
            return Err(std::io::Error::other("no free loopback port found"));
        }
    }
    Ok([ports[0], ports[1], ports[2]])
}

fn write_kubeconfig(path: &Path, apiserver_port: u16, files: &PkiFiles) -> std::io::Result<()> {
    // JSON is valid YAML; kubectl and kube read it alike, and serde_json quotes the paths correctly.
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "iio-test", "cluster": {
            "server": format!("https://127.0.0.1:{apiserver_port}"),
            "certificate-authority": files.ca_cert,
        }}],
        "users": [{ "name": pki::ADMIN_USER, "user": {
            "client-certificate": files.admin_cert,
            "client-key": files.admin_key,
        }}],
        "contexts": [{ "name": "iio-test", "context": { "cluster": "iio-test", "user": pki::ADMIN_USER, "namespace": "default" }}],
        "current-context": "iio-test",
    });
    let text = serde_json::to_string_pretty(&kubeconfig).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

async fn load_config(path: &Path) -> Result<kube::Config, Error> {
    let to_error = |source| Error::Kubeconfig {
        path: path.into(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(to_error)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(to_error)
}

fn etcd_args(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=iio-test".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=iio-test={peer}"),
        // Test data is disposable; fsync dominates etcd's latency on a shared disk.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(root: &Path, files: &PkiFiles, etcd_client_port: u16, port: u16) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", path(&root.join("pki"))),
        format!("--tls-cert-file={}", path(&files.serving_cert)),
        format!("--tls-private-key-file={}", path(&files.serving_key)),
        format!("--client-ca-file={}", path(&files.ca_cert)),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!(
            "--service-account-key-file={}",
            path(&files.service_account_public_key)
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(&files.service_account_key)
        ),
        "--authorization-mode=RBAC".into(),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        "--allow-privileged=true".into(),
        // As envtest: pods must not wait for a default ServiceAccount to appear in a fresh
        // namespace; kube-controller-manager still creates those accounts.
        "--disable-admission-plugins=ServiceAccount".into(),
        "--profiling=false".into(),
        // The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation
        // refuses (loopback), and nothing in the tests dials it: no reconciler, no error every 10 s.
        "--endpoint-reconciler-type=none".into(),
    ]
}

fn controller_manager_args(kubeconfig: &Path, files: &PkiFiles) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // Only what an API-only cluster needs: ownerReference GC, namespace deletion, the
        // `default` ServiceAccount of each namespace and legacy token Secrets.
        "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token".into(),
        format!(
            "--service-account-private-key-file={}",
            files.service_account_key.display()
        ),
        format!("--root-ca-file={}", files.ca_cert.display()),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        // No metrics or health endpoint: nothing scrapes it, and it saves a port.
        "--secure-port=0".into(),
    ]
}

fn spawn(
    options: &Options,
    name: &'static str,
    args: &[String],
    root: &Path,
) -> Result<Process, Error> {
    Process::spawn(
        name,
        &options.binary(name),
        args,
        &root.join(format!("{name}.log")),
    )
    .map_err(|source| Error::Io {
        what: format!("spawning {name}"),
        logs: root.into(),
        source,
    })
}

fn check_running(process: &mut Process, phase: &str) -> Result<(), Error> {
    match process.exited() {
        None => Ok(()),
        Some(status) => Err(Error::Exited {
            process: process.name(),
            phase: phase.into(),
            status,
            log: process.log().into(),
            tail: process::tail(process.log(), FAILURE_LOG_LINES),
        }),
    }
}

async fn wait_ready<Probe, Fut>(
    what: &str,
    timeout: Duration,
    root: &Path,
    process: &mut Process,
    phase: &str,
    mut probe: Probe,
) -> Result<(), Error>
where
    Probe: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        check_running(process, phase)?;
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                what: what.into(),
                timeout,
                last,
                logs: root.into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// etcd serves plain HTTP on loopback; one HTTP/1.0 request needs no client library.
async fn etcd_ready(port: u16) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    match response.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(response
            .lines()
            .next()
            .unwrap_or("empty response")
            .to_string()),
    }
}

/// `/readyz` includes etcd, the RBAC bootstrap roles and the CRD informers: a ready apiserver
/// authorizes the admin and serves CRDs.
async fn apiserver_ready(config: &kube::Config) -> Result<(), String> {
    let client = Client::try_from(config.clone()).map_err(|e| e.to_string())?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(body),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels_derived_from_the_test_name() {
        assert_eq!(namespace_name("crd_is_accepted", 3), "crd-is-accepted-3");
        assert_eq!(namespace_name("Tests::Gc::Owner", 0), "tests--gc--owner-0");
        assert_eq!(namespace_name("___", 7), "test-7");
        let long = namespace_name(&"x".repeat(100), 12345);
        assert!(long.len() <= 63, "{long} is a DNS label");
        assert!(long.ends_with("-12345"));
    }

    #[test]
    fn free_ports_are_distinct_and_never_repeated() {
        let first = free_ports().expect("loopback ports are available");
        let second = free_ports().expect("loopback ports are available");
        let all: HashSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn a_missing_build_says_how_to_build_it() {
        let options = Options {
            controlplane_dir: PathBuf::from("/nonexistent/controlplane"),
            crds: vec![],
            timeout: Duration::from_secs(1),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let error = runtime
            .block_on(ControlPlane::start_with(options))
            .expect_err("nothing is built there");
        let message = error.to_string();
        assert!(message.contains("cargo xtask controlplane"), "{message}");
        assert!(
            message.contains("/nonexistent/controlplane/bin"),
            "{message}"
        );
    }

    #[test]
    fn the_committed_crd_directory_holds_the_meshservice_crd() {
        let crds = load_all_crds(&[versions::workspace_root().join("deploy/crds")])
            .expect("the CRD files parse");
        let names: Vec<&str> = crds
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        assert_eq!(names, ["meshservices.mesh.istio.operator"]);
    }
}
