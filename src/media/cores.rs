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
    counts: Arc<Counts>,
    machine: Option<Arc<MachineSeats>>,
}

/// Room for one more job, taken before its claim and held until it ends.
/// When nodes share the machine's cores it holds a core's lock file; once
/// the claim brought a job ([`Reservation::claimed`]), the job counts in
/// every share. A claim that finds no job must not shrink the running
/// jobs' shares, so until then it does not count.
#[derive(Debug)]
pub struct Reservation {
    counts: Arc<Counts>,
    counted: bool,
    machine_seat: Option<File>,
}

/// A node's reservations: those whose claim brought a job, and those still
/// claiming (which hold a machine seat all the same).
#[derive(Debug, Default)]
struct Counts {
    running: AtomicUsize,
    claiming: AtomicUsize,
}

impl Reservation {
    /// The claim brought a job: it counts from now on.
    pub fn claimed(&mut self) {
        if !self.counted {
            self.counted = true;
            self.counts.running.fetch_add(1, Ordering::SeqCst);
            self.counts.claiming.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether other nodes wait for this one's end: then it is worth telling them.
    pub fn is_shared(&self) -> bool {
        self.machine_seat.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let count = match self.counted {
            true => &self.counts.running,
            false => &self.counts.claiming,
        };
        count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CoreShare {
    /// `cores` shared by the jobs that reserve room (at least one core).
    pub fn new(cores: usize) -> Self {
        Self {
            cores: cores.max(1),
            counts: Arc::default(),
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
        // counted before the seat is taken, so no share ever sees the seat
        // without it
        self.counts.claiming.fetch_add(1, Ordering::SeqCst);
        let mut reservation = Reservation {
            counts: self.counts.clone(),
            counted: false,
            machine_seat: None,
        };
        if let Some(machine) = &self.machine {
            // when none is free, dropping the reservation undoes the count
            reservation.machine_seat = Some(machine.take()?);
        }
        Some(reservation)
    }

    /// The cores one job may use now: an even share among the jobs reserved
    /// (on a shared machine: every node's), rounded up so no core idles, and
    /// never less than one.
    pub fn share(&self) -> usize {
        let jobs = match &self.machine {
            // this node's own claims in flight hold seats but run nothing
            Some(machine) => machine
                .taken()
                .saturating_sub(self.counts.claiming.load(Ordering::SeqCst)),
            None => self.counts.running.load(Ordering::SeqCst),
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
        let job = || {
            let mut room = node.reserve().unwrap();
            room.claimed();
            room
        };
        assert_eq!(node.share(), 4, "nobody running: a whole node");
        let a = job();
        assert_eq!(node.share(), 4);
        let looking = node.reserve().unwrap();
        assert_eq!(
            node.share(),
            4,
            "a claim that may find nothing does not count"
        );
        drop(looking);
        let b = job();
        assert_eq!(node.share(), 2);
        let c = job();
        assert_eq!(node.share(), 2, "rounded up: no core idles");
        let d = job();
        let e = job();
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
        let mut first = a.reserve().expect("a free core");
        assert!(first.is_shared());
        first.claimed();
        assert_eq!(b.share(), 2, "one job: every core");
        let second = b.reserve().expect("the other core");
        assert_eq!(a.share(), 1, "counted across nodes, claiming or not");
        assert_eq!(b.share(), 2, "a node's own claim in flight runs nothing");
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
