//! Keeps kube-controller-manager running, as the kubelet does for the static pod of a real control
//! plane. kube-controller-manager gives up and exits when the apiserver stays unhealthy for about
//! ten seconds while it starts; a restart of etcd or the apiserver soon after the control plane came
//! up (as in tests that restart them) can cause exactly that, and then nothing would delete
//! namespaces or garbage-collect owned objects any more.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Processes;
use crate::process::Process;

/// How often the process is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Pause after a restart, so a process that exits at once is not restarted in a tight loop.
const BACKOFF: Duration = Duration::from_secs(1);

/// How to start the supervised process again.
pub(crate) struct Restart {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) log: PathBuf,
}

/// A thread that restarts kube-controller-manager when it has exited; stopped by [`Supervisor::stop`]
/// or on drop.
pub(crate) struct Supervisor {
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub(crate) fn start(processes: Arc<Mutex<Processes>>, restart: Restart) -> Self {
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("controlplane-supervisor".into())
            .spawn({
                let stopping = Arc::clone(&stopping);
                move || supervise(&processes, &restart, &stopping)
            })
            .ok();
        Self { stopping, thread }
    }

    /// Stops the thread; the process itself keeps running.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn supervise(processes: &Mutex<Processes>, restart: &Restart, stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let restarted = {
            let mut processes = processes.lock().unwrap_or_else(PoisonError::into_inner);
            restart_if_exited(&mut processes.controller_manager, restart)
        };
        if restarted {
            std::thread::sleep(BACKOFF);
        }
    }
}

/// Replaces an exited process with a new one; true when it did.
fn restart_if_exited(slot: &mut Option<Process>, restart: &Restart) -> bool {
    let Some(process) = slot.as_mut() else {
        return false;
    };
    let Some(status) = process.exited() else {
        return false;
    };
    let name = process.name();
    eprintln!(
        "{name} exited ({status}); restarting it as a kubelet would (log: {})",
        restart.log.display()
    );
    // Reaps it and forgets its pid.
    process.stop(Duration::ZERO);
    match Process::spawn(name, &restart.program, &restart.args, &restart.log) {
        Ok(new) => *slot = Some(new),
        Err(error) => eprintln!("restarting {name} failed: {error}; trying again"),
    }
    true
}
