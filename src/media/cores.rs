//! The node's cores, shared by the jobs running on it. A job alone may use
//! every core (parallel seeks, a multi-threaded decoder); as more jobs start,
//! each one's share shrinks, and a job gives cores back between its ffmpeg
//! runs, so jobs waiting for a core get one without oversubscribing the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct CoreShare {
    cores: usize,
    running: Arc<AtomicUsize>,
}

/// A job's seat at the node's cores; leaving is dropping it.
#[derive(Debug)]
pub struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CoreShare {
    /// `cores` shared by the jobs that take a seat (at least one core).
    pub fn new(cores: usize) -> Self {
        Self {
            cores: cores.max(1),
            running: Arc::default(),
        }
    }

    /// All cores of this machine.
    pub fn of_this_machine() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// A job starts using the cores.
    pub fn seat(&self) -> Seat {
        self.running.fetch_add(1, Ordering::SeqCst);
        Seat(self.running.clone())
    }

    /// The cores one seated job may use now: an even share, rounded up so no
    /// core idles, and never less than one.
    pub fn share(&self) -> usize {
        let jobs = self.running.load(Ordering::SeqCst).max(1);
        self.cores.div_ceil(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_shrink_as_jobs_start_and_grow_as_they_leave() {
        let node = CoreShare::new(4);
        assert_eq!(node.share(), 4, "nobody seated: a whole node");
        let a = node.seat();
        assert_eq!(node.share(), 4);
        let b = node.seat();
        assert_eq!(node.share(), 2);
        let c = node.seat();
        assert_eq!(node.share(), 2, "rounded up: no core idles");
        let d = node.seat();
        let e = node.seat();
        assert_eq!(node.share(), 1, "never less than one");
        drop((b, c, d, e));
        assert_eq!(node.share(), 4);
        drop(a);
        assert_eq!(CoreShare::new(0).cores(), 1);
    }
}
