//! Child processes that cannot outlive the test process.
//!
//! Every child is spawned (1) in its own process group, so a terminal's Ctrl-C reaches the test
//! harness only and the harness decides how its children stop, and (2) with
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)`, so the kernel kills it when its parent dies — also when the
//! test process is SIGKILLed, or exits while the shared control plane sits in a `static` whose
//! `Drop` never runs. The death signal fires when the parent *thread* exits, not the process: a
//! child spawned from a `#[tokio::test]` thread would die when that one test ends. So all children
//! are spawned from one dedicated thread that lives as long as the process.
//!
//! A normal exit additionally runs an `atexit` hook that kills the registered children and removes
//! their temporary directories; after a SIGKILL, [`crate::sweep_stale_dirs`] removes the directory
//! the next time a control plane starts.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The long-lived thread all children are spawned from (see the module docs for why).
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    // The requester may have given up waiting; the child is then reaped by nobody
                    // but still dies with this process, which is acceptable.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the OS refused to start the control plane spawner thread");
        register_atexit_hook();
        Mutex::new(sender)
    })
}

fn spawn_from_spawner(command: Command) -> io::Result<Child> {
    let (reply, answer) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((command, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// A running control-plane binary whose stdout and stderr go to a log file.
#[derive(Debug)]
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `program args…`, appending its output to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> io::Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        die_with_parent(&mut command);
        let child = spawn_from_spawner(command)?;
        register_pid(child.id());
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` when the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps the child.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            signal_group(self.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.exited().is_none() {
                signal_group(self.child.id(), libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
        unregister_pid(self.child.id());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Signals the process group led by `pid` (the children are group leaders, see `process_group(0)`).
fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a vanished group yields ESRCH.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal will ever come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {
    // Only Linux has a parent-death signal; elsewhere the atexit hook is the only safety net.
}

/// Children and directories the atexit hook cleans up.
#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn register_pid(pid: u32) {
    if let Ok(mut registry) = registry().lock() {
        registry.pids.push(pid);
    }
}

fn unregister_pid(pid: u32) {
    if let Ok(mut registry) = registry().lock() {
        registry.pids.retain(|p| *p != pid);
    }
}

/// Removes `dir` at process exit unless it was removed before (see [`unregister_dir`]).
pub(crate) fn register_dir(dir: &Path) {
    if let Ok(mut registry) = registry().lock() {
        registry.dirs.push(dir.to_path_buf());
    }
}

pub(crate) fn unregister_dir(dir: &Path) {
    if let Ok(mut registry) = registry().lock() {
        registry.dirs.retain(|d| d != dir);
    }
}

fn register_atexit_hook() {
    extern "C" fn at_exit() {
        // try_lock: a thread that died holding the lock must not hang the exit.
        let Ok(registry) = registry().try_lock() else {
            return;
        };
        for pid in &registry.pids {
            signal_group(*pid, libc::SIGKILL);
            if let Ok(pid) = libc::pid_t::try_from(*pid) {
                // SAFETY: waitpid on our own child; reaping it before deleting the directory it writes to.
                unsafe {
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
        if std::env::var_os(crate::KEEP_ENV).is_none() {
            for dir in &registry.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    // SAFETY: registering a plain extern "C" function; it is safe to run during normal exit.
    unsafe {
        libc::atexit(at_exit);
    }
}

/// The last `lines` lines of a log file, or a note why it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    // Logs grow during a long test run; only their end is read.
    const WINDOW: u64 = 64 * 1024;
    let read_end = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(WINDOW)))?;
        let mut end = Vec::new();
        file.read_to_end(&mut end)?;
        Ok(String::from_utf8_lossy(&end).into_owned())
    };
    match read_end() {
        Ok(end) => {
            let all: Vec<&str> = end.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
