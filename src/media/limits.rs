//! Kernel limits on the media tools. A crafted upload (a decompression bomb,
//! a stream that makes a decoder spin) must not take a core for ever, nor
//! the node's memory, even if the node that watches the tool is itself
//! stuck: the kernel ends a tool that has used up its CPU time with SIGXCPU,
//! and refuses it address space past its memory limit (`RLIMIT_AS`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Resource, Rlimit, prlimit};

/// CPU time a tool may use in `wall` of wall time on every core of the node:
/// more than any honest run can spend, far less than for ever.
pub fn cpu_budget(wall: Duration) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    wall.saturating_mul(cores)
}

/// Address space each media tool may map; 0: no limit. Set once at start
/// from the settings (`media_memory_bytes`).
static MEMORY: AtomicU64 = AtomicU64::new(0);

/// The memory limit every media tool started from now on gets.
pub fn set_memory_limit(bytes: u64) {
    MEMORY.store(bytes, Ordering::Relaxed);
}

/// Caps the CPU time (when a budget is given) and the memory of the running
/// process `pid`. The tool has run for a moment before this lands, which is
/// harmless: the caps are on its total and on what it maps from now on.
pub(super) fn limit_tool(pid: Option<u32>, budget: Option<Duration>) {
    let Some(pid) = pid.and_then(|p| Pid::from_raw(p as i32)) else {
        return;
    };
    let memory = MEMORY.load(Ordering::Relaxed);
    if memory > 0 {
        let limit = Rlimit {
            current: Some(memory),
            maximum: Some(memory),
        };
        if let Err(e) = prlimit(Some(pid), Resource::As, limit) {
            tracing::warn!(pid = %pid.as_raw_nonzero(), error = %e, "could not limit a media tool's memory");
        }
    }
    let Some(budget) = budget else { return };
    let secs = budget.as_secs().max(1);
    let limit = Rlimit {
        current: Some(secs),
        // one second of grace between SIGXCPU and SIGKILL
        maximum: Some(secs + 1),
    };
    if let Err(e) = prlimit(Some(pid), Resource::Cpu, limit) {
        tracing::warn!(pid = %pid.as_raw_nonzero(), error = %e, "could not limit a media tool's CPU time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::process::{Process, Tool};
    use std::path::Path;

    #[tokio::test]
    async fn a_tool_that_spins_is_stopped_by_its_cpu_budget() {
        let started = std::time::Instant::now();
        let out = Process::new(Tool::Ffmpeg, Path::new("sh"))
            .args(["-c", "while :; do :; done"])
            .cpu_limit(Duration::from_secs(1))
            .output(Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!out.success);
        assert_eq!(out.code, None, "ended by a signal");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn budgets_scale_with_cores() {
        assert!(cpu_budget(Duration::from_secs(10)) >= Duration::from_secs(10));
    }
}
