//! The machine's cores, shared by the jobs running on it. A job alone may
//! use every core (parallel seeks, a multi-threaded decoder); as more jobs
//! start, each one's share shrinks, and a job gives cores back between its
//! ffmpeg runs, so jobs waiting for a core get one without oversubscribing.
//!
//! A node counts its own jobs. Nodes that run on one machine (docker
//! compose, a laptop) can name one directory (`shared_cores_dir`): it holds
//! a lock file per core, a job of any of them holds one while it runs, so at
//! most one job per core runs on the machine and each job's share counts
//! the jobs of every node there. The locks are `flock`s: the kernel drops a
//! dead node's at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct CoreShare {
    cores: usize,
    running: Arc<AtomicUsize>,
    machine: Option<Arc<MachineSeats>>,
}

/// Room for one more job, held from before its claim until it ends: it
/// counts in every share meanwhile. When nodes share the machine's cores it
/// also holds a core's lock file.
#[derive(Debug)]
pub struct Reservation {
    running: Arc<AtomicUsize>,
    machine_seat: Option<File>,
}

impl Reservation {
    /// Whether other nodes wait for this one's end: then it is worth telling them.
    pub fn is_shared(&self) -> bool {
        self.machine_seat.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CoreShare {
    /// `cores` shared by the jobs that reserve room (at least one core).
    pub fn new(cores: usize) -> Self {
        Self {
            cores: cores.max(1),
            running: Arc::default(),
            machine: None,
        }
    }

    /// All cores of this machine; shared with the other nodes that name
    /// `shared_dir`, if given.
    pub fn of_this_machine(shared_dir: Option<&Path>) -> io::Result<Self> {
        let share = Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()));
        match shared_dir {
            None => Ok(share),
            Some(dir) => Ok(Self {
                machine: Some(Arc::new(MachineSeats::open(dir, share.cores)?)),
                ..share
            }),
        }
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Room for a job before it is claimed; None while every core of a
    /// shared machine runs one.
    pub fn reserve(&self) -> Option<Reservation> {
        let machine_seat = match &self.machine {
            None => None,
            Some(machine) => Some(machine.take()?),
        };
        self.running.fetch_add(1, Ordering::SeqCst);
        Some(Reservation {
            running: self.running.clone(),
            machine_seat,
        })
    }

    /// The cores one job may use now: an even share among the jobs reserved
    /// (on a shared machine: every node's), rounded up so no core idles, and
    /// never less than one.
    pub fn share(&self) -> usize {
        let jobs = match &self.machine {
            Some(machine) => machine.taken(),
            None => self.running.load(Ordering::SeqCst),
        };
        self.cores.div_ceil(jobs.max(1))
    }
}

/// One lock file per core in a directory the machine's nodes share.
#[derive(Debug)]
struct MachineSeats {
    dir: PathBuf,
    /// Each seat's file opened once to ask, without taking it, whether
    /// someone holds it.
    probes: Vec<File>,
}

impl MachineSeats {
    fn open(dir: &Path, cores: usize) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let probes = (0..cores)
            .map(|i| open_seat(dir, i))
            .collect::<io::Result<_>>()?;
        Ok(Self {
            dir: dir.to_owned(),
            probes,
        })
    }

    fn take(&self) -> Option<File> {
        // A seat being counted (see `taken`) looks held for a moment: a
        // second pass finds it free.
        (0..TAKE_PASSES).find_map(|_| {
            (0..self.probes.len()).find_map(|i| {
                let file = open_seat(&self.dir, i).ok()?;
                file.try_lock().ok()?;
                Some(file)
            })
        })
    }

    /// How many seats some job of some node holds: a shared lock is refused
    /// exactly while a job holds the seat's exclusive one.
    fn taken(&self) -> usize {
        self.probes
            .iter()
            .filter(|probe| match probe.try_lock_shared() {
                Ok(()) => {
                    let _ = probe.unlock();
                    false
                }
                Err(_) => true,
            })
            .count()
    }
}

/// How many times a job looks over the seats before it waits for a wake-up.
const TAKE_PASSES: usize = 3;

fn open_seat(dir: &Path, i: usize) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(format!("core-{i}.lock")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_shrink_as_jobs_start_and_grow_as_they_leave() {
        let node = CoreShare::new(4);
        assert_eq!(node.share(), 4, "nobody running: a whole node");
        let a = node.reserve().unwrap();
        assert_eq!(node.share(), 4);
        let b = node.reserve().unwrap();
        assert_eq!(node.share(), 2);
        let c = node.reserve().unwrap();
        assert_eq!(node.share(), 2, "rounded up: no core idles");
        let d = node.reserve().unwrap();
        let e = node.reserve().unwrap();
        assert_eq!(node.share(), 1, "never less than one");
        drop((b, c, d, e));
        assert_eq!(node.share(), 4);
        drop(a);
        assert_eq!(CoreShare::new(0).cores(), 1);
    }

    #[test]
    fn nodes_sharing_a_machine_hold_one_core_each_job() {
        let dir = tempfile::tempdir().unwrap();
        let shared = |cores| CoreShare {
            machine: Some(Arc::new(MachineSeats::open(dir.path(), cores).unwrap())),
            ..CoreShare::new(cores)
        };
        // two nodes on a two-core machine
        let (a, b) = (shared(2), shared(2));
        assert_eq!(b.share(), 2, "nobody running: the whole machine");
        let first = a.reserve().expect("a free core");
        assert!(first.is_shared());
        assert_eq!(b.share(), 2, "one job: every core");
        let second = b.reserve().expect("the other core");
        assert_eq!((a.share(), b.share()), (1, 1), "counted across nodes");
        assert!(
            a.reserve().is_none() && b.reserve().is_none(),
            "no third job"
        );
        drop(first);
        assert_eq!(b.share(), 2);
        let third = a.reserve().expect("the core given back");
        drop((second, third));
        // a node alone keeps no files
        assert!(!CoreShare::new(2).reserve().unwrap().is_shared());
    }
}
