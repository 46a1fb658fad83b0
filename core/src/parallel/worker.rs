//! The workers of in-order parallel validation: threads that each own one
//! [`Driver`] and take executions from one queue, lowest position first,
//! and the read-set recording every execution runs under.

use crate::guest_log::{LogLine, capture_logs};
use crate::verdict::{Rejection, Verdict};
use crate::{Driver, DriverConfig, Error, ExecutorHost, PreparedModule, Result, SharedState, StateView, Stats};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every `state_get` answer of one execution, in order: the key and the
/// value found (`None`: absent). The whole value is kept even when the
/// guest asked only for its length: comparing it is stricter, never wrong.
pub(super) type ReadSet = Vec<(Box<[u8]>, Option<Box<[u8]>>)>;

/// Whether any key of `reads` has, in `world`, another value than the one
/// read (absence included).
pub(super) fn stale(world: &dyn StateView, reads: &ReadSet) -> bool {
    reads.iter().any(|(key, value)| world.get(key) != value.as_deref())
}

/// The state an execution sees, recording every answer it gives.
struct Recorder {
    state: SharedState,
    reads: Mutex<ReadSet>,
}

impl StateView for Recorder {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let value = self.state.get(key);
        lock(&self.reads).push((key.into(), value.map(Into::into)));
        value
    }
}

/// A lock that outlives a panic elsewhere: the data behind these locks is
/// consistent between statements.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a worker is asked to do.
pub(super) enum Job {
    /// Validate the block's transaction at the job's position against the
    /// newest committed state when the job starts ([`Queue::latest`]).
    Validate,
    /// Install the executor an approved upgrade at the job's position
    /// carries, running `executor_migrate` against `state` (the state at
    /// its commit); on success the worker is at executor `epoch`.
    Upgrade { executor: Arc<[u8]>, state: SharedState, epoch: u64 },
}

/// The queue every worker takes from, and what the block's jobs need.
pub(super) struct Queue {
    /// Jobs by (position in the block, attempt): the lowest position first,
    /// as the committer waits for it.
    pub jobs: BTreeMap<(usize, u32), Job>,
    /// The block (a counter, so that late answers of a previous block are
    /// told apart).
    pub block: u64,
    /// Its transactions.
    pub txs: Arc<Vec<Vec<u8>>>,
    /// The run's index of its first transaction (audits are chosen by it).
    pub first: u64,
    /// The current attempt at each position: a queued job of an older one
    /// is skipped.
    pub attempts: Vec<u32>,
    /// The executor in force (`epoch` 0: the one loaded) and its bytes.
    pub epoch: u64,
    pub executor: Option<Arc<[u8]>>,
    /// The newest committed state, during a block: what a validation
    /// starting now runs against.
    pub latest: Option<SharedState>,
    /// Workers running a job or not yet idle since their last one.
    pub busy: usize,
    /// Workers with a lower index take jobs; the others end (an upgrade
    /// to an executor of which fewer fit in `memory_cap`).
    pub active: usize,
    /// The validator is gone: workers end.
    pub closed: bool,
}

/// What the committer and the workers share.
pub(super) struct Shared {
    pub queue: Mutex<Queue>,
    /// Signalled when jobs are queued.
    pub wake: Condvar,
    /// Signalled when the last busy worker goes idle.
    pub idle: Condvar,
    /// Jobs queued, readable without the lock (for spinning).
    pub pending: AtomicUsize,
    /// Each worker's counters and current executor, updated whenever it
    /// goes idle.
    pub status: Vec<Mutex<(Stats, Arc<PreparedModule>)>>,
}

impl Shared {
    /// Queues `job` at `(index, attempt)` and wakes a worker.
    pub fn push(&self, index: usize, attempt: u32, job: Job) {
        let mut queue = lock(&self.queue);
        queue.jobs.insert((index, attempt), job);
        self.pending.store(queue.jobs.len(), Ordering::Release);
        drop(queue);
        self.wake.notify_one();
    }
}

/// Rounds a thread polls before it sleeps: a sleeping thread takes tens of
/// microseconds to wake, longer than many transactions run.
const SPINS: u32 = 2_000;

/// A worker's answer.
pub(super) struct Done {
    pub block: u64,
    pub index: usize,
    pub attempt: u32,
    /// The executor the job ran with.
    pub epoch: u64,
    /// The verdict (for an upgrade: approved if installed,
    /// `rejected(upgrade_failed)` if not); `Err` for host failures.
    pub result: Result<Verdict>,
    pub reads: ReadSet,
    /// The `host.log` lines of the job, to emit if it is committed.
    pub logs: Vec<LogLine>,
    /// How long the validation ran.
    pub took: Duration,
    /// For an installed upgrade: how many drivers of the new executor fit
    /// in `memory_cap`.
    pub fit: Option<usize>,
}

/// The workers: the committer's own driver, which runs jobs whenever the
/// committer would otherwise wait (so one worker needs no thread and no
/// hand-off, and N workers never make N + 1 busy threads), and a thread for
/// each of the others.
pub(super) struct Workers {
    pub shared: Arc<Shared>,
    done: Receiver<Done>,
    /// Kept so that the channel never closes while the committer runs
    /// jobs itself.
    _done_tx: Sender<Done>,
    /// The committer's driver.
    local: Runner,
    handles: Vec<JoinHandle<()>>,
}

/// A driver and the executor epoch it has installed.
struct Runner {
    driver: Driver,
    epoch: u64,
}

impl Workers {
    /// One thread per host, each loading `executor` under `config` on its
    /// own stack of the size the stack budget needs; the first load error
    /// (by host order) if any fails.
    pub fn start(hosts: Vec<Arc<dyn ExecutorHost>>, executor: &[u8], config: &DriverConfig) -> Result<Self> {
        let backend = hosts[0].name();
        let stack = crate::instrument::thread_stack_bytes(hosts[0].limits().max_stack);
        let (done_tx, done) = channel();
        let (ready_tx, ready) = channel::<(usize, Result<Driver>)>();
        let mut drivers: Vec<Option<Driver>> = hosts.iter().map(|_| None).collect();
        // Load on the workers' own stacks: the first alone (it compiles,
        // and fills the cache), then the others — in parallel from the
        // cache, else one at a time, so that compilation's peak memory is
        // paid once at a time (`Limits::memory_estimate` counts it once).
        std::thread::scope(|s| {
            let load = |i: usize| {
                let (sender, config, host) = (ready_tx.clone(), config.clone(), hosts[i].clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("validate-{i}-load"))
                    .stack_size(stack)
                    .spawn_scoped(s, move || {
                        let _ = sender.send((i, Driver::new(host, executor, config)));
                    });
                match spawned {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        let _ = ready_tx.send((i, Err(thread_error(backend, &e))));
                        None
                    }
                }
            };
            if let Some(h) = load(0) {
                let _ = h.join();
            }
            let parallel = config.cache.is_some();
            let mut handles = Vec::new();
            for i in 1..hosts.len() {
                let handle = load(i);
                if parallel {
                    handles.push(handle);
                } else if let Some(h) = handle {
                    let _ = h.join();
                }
            }
            handles.into_iter().flatten().for_each(|h| {
                let _ = h.join();
            });
        });
        drop(ready_tx);
        let mut errors = BTreeMap::new();
        for (i, loaded) in ready.iter() {
            match loaded {
                Ok(driver) => drivers[i] = Some(driver),
                Err(e) => {
                    errors.insert(i, e);
                }
            }
        }
        if let Some((_, e)) = errors.pop_first() {
            return Err(e);
        }
        let drivers: Vec<Driver> = drivers.into_iter().map(|d| d.expect("every load answered")).collect();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: BTreeMap::new(),
                block: 0,
                txs: Arc::default(),
                first: 0,
                attempts: Vec::new(),
                epoch: 0,
                executor: None,
                latest: None,
                busy: 0,
                active: hosts.len(),
                closed: false,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            pending: AtomicUsize::new(0),
            status: drivers.iter().map(|d| Mutex::new((d.stats().clone(), d.module_shared()))).collect(),
        });
        let mut drivers = drivers.into_iter();
        let local = Runner { driver: drivers.next().expect("at least one host"), epoch: 0 };
        let mut workers =
            Workers { shared: shared.clone(), done, _done_tx: done_tx.clone(), local, handles: Vec::new() };
        for (i, driver) in drivers.enumerate() {
            let (shared, done_tx) = (shared.clone(), done_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("validate-{}", i + 1))
                .stack_size(stack)
                .spawn(move || work(i + 1, Runner { driver, epoch: 0 }, &shared, &done_tx))
                .map_err(|e| thread_error(backend, &e))?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// Drops every queued job and the block's state (the block ended or
    /// failed): between blocks the embedder's state is its own again.
    pub fn clear(&self) {
        let mut queue = lock(&self.shared.queue);
        queue.jobs.clear();
        queue.latest = None;
        self.shared.pending.store(0, Ordering::Release);
    }

    /// Each worker's counters and current executor, once every worker is
    /// idle (after a block, at most the run of a job it abandoned).
    pub fn status(&self) -> Vec<(Stats, Arc<PreparedModule>)> {
        let mut queue = lock(&self.shared.queue);
        while queue.busy > 0 || !queue.jobs.is_empty() {
            queue = self.shared.idle.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
        drop(queue);
        let local = (self.local.driver.stats().clone(), self.local.driver.module_shared());
        std::iter::once(local).chain(self.shared.status[1..].iter().map(|s| lock(s).clone())).collect()
    }

    /// Validates `tx`, the run's transaction `index`, on the committer's own
    /// driver against `state`, the exact state at its position: nothing
    /// recorded, nothing captured (it is committed as it runs). Returns
    /// the verdict and how long it ran.
    pub fn direct(&mut self, tx: &[u8], state: SharedState, index: u64) -> (Result<Verdict>, Duration) {
        let (epoch, executor) = {
            let queue = lock(&self.shared.queue);
            (queue.epoch, queue.executor.clone())
        };
        let started = Instant::now();
        let local = &mut self.local;
        let backend = local.driver.backend();
        let result = local
            .catch_up(epoch, executor)
            .and_then(|()| guarded(backend, || local.driver.validate_at(tx, state, index)));
        (result, started.elapsed())
    }

    /// The next answer: a thread's, or — while none is back and a job is
    /// queued — the committer's own run of the lowest queued job.
    pub fn next(&mut self) -> Done {
        let mut spins = 0;
        loop {
            match self.done.try_recv() {
                Ok(done) => return done,
                Err(TryRecvError::Disconnected) => unreachable!("the validator keeps a sender"),
                Err(TryRecvError::Empty) => {}
            }
            let taken = {
                let mut queue = lock(&self.shared.queue);
                pop(&self.shared, &mut queue)
            };
            if let Some(taken) = taken {
                return self.local.run(taken);
            }
            // Only the committer queues jobs: with none queued, the answer
            // it needs is a thread's, running.
            if spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            return self.done.recv().expect("the validator keeps a sender");
        }
    }

    /// The number of workers taking jobs.
    pub fn len(&self) -> usize {
        lock(&self.shared.queue).active
    }

    /// Ends every worker from the `n`-th on (at least the committer's own
    /// stays), each once its current job is done.
    pub fn retire(&self, n: usize) {
        let mut queue = lock(&self.shared.queue);
        queue.active = queue.active.min(n.max(1));
        drop(queue);
        self.shared.wake.notify_all();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        {
            let mut queue = lock(&self.shared.queue);
            queue.closed = true;
            queue.jobs.clear();
        }
        self.shared.wake.notify_all();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn thread_error(backend: &'static str, e: &std::io::Error) -> Error {
    Error::HostFailure { backend, message: format!("cannot start a worker thread: {e}") }
}

/// What a validation runs: the block, the run's index of its first
/// transaction, and the state to run against.
struct Input {
    txs: Arc<Vec<Vec<u8>>>,
    first: u64,
    state: SharedState,
}

/// A job taken from the queue, with what it needs.
struct Taken {
    block: u64,
    index: usize,
    attempt: u32,
    job: Job,
    /// For a validation: what it runs.
    tx: Option<Input>,
    epoch: u64,
    executor: Option<Arc<[u8]>>,
}

/// Takes the lowest current job, if any, skipping superseded ones.
fn pop(shared: &Shared, queue: &mut Queue) -> Option<Taken> {
    while let Some(((index, attempt), job)) = queue.jobs.pop_first() {
        shared.pending.store(queue.jobs.len(), Ordering::Release);
        if queue.attempts.get(index) != Some(&attempt) {
            continue; // superseded before it started
        }
        let tx = match job {
            Job::Validate => {
                let state = queue.latest.clone().expect("set for the whole block");
                Some(Input { txs: queue.txs.clone(), first: queue.first, state })
            }
            Job::Upgrade { .. } => None,
        };
        let (block, epoch, executor) = (queue.block, queue.epoch, queue.executor.clone());
        return Some(Taken { block, index, attempt, job, tx, epoch, executor });
    }
    None
}

/// Waits for the next current job; `None` when the validator is gone.
/// `idle` runs (without the lock) before the worker sleeps after a job.
fn take(shared: &Shared, id: usize, ran: &mut bool, idle: &mut dyn FnMut()) -> Option<Taken> {
    let mut spins = 0;
    let mut queue = lock(&shared.queue);
    loop {
        if queue.closed || id >= queue.active {
            if *ran {
                drop(rest(shared, queue, ran, idle));
            }
            return None;
        }
        if let Some(taken) = pop(shared, &mut queue) {
            if !*ran {
                queue.busy += 1;
                *ran = true;
            }
            return Some(taken);
        }
        if spins < SPINS {
            drop(queue);
            while spins < SPINS && shared.pending.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
                spins += 1;
            }
            spins += 1;
            queue = lock(&shared.queue);
            continue;
        }
        if *ran {
            queue = rest(shared, queue, ran, idle);
            continue;
        }
        queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
    }
}

/// A worker goes idle: publishes its status (`idle`, without the lock) and
/// stops counting as busy.
fn rest<'a>(
    shared: &'a Shared,
    queue: MutexGuard<'a, Queue>,
    ran: &mut bool,
    idle: &mut dyn FnMut(),
) -> MutexGuard<'a, Queue> {
    drop(queue);
    idle();
    let mut queue = lock(&shared.queue);
    *ran = false;
    queue.busy -= 1;
    if queue.busy == 0 {
        shared.idle.notify_all();
    }
    queue
}

/// A worker thread's loop: take a job, run it, answer.
fn work(id: usize, mut runner: Runner, shared: &Shared, done: &Sender<Done>) {
    let mut ran = false;
    loop {
        let taken = {
            let driver = &runner.driver;
            take(shared, id, &mut ran, &mut || {
                *lock(&shared.status[id]) = (driver.stats().clone(), driver.module_shared())
            })
        };
        let Some(taken) = taken else { return };
        if done.send(runner.run(taken)).is_err() {
            return;
        }
    }
}

impl Runner {
    /// Installs the executor in force (`epoch`, its bytes) if this driver
    /// is behind it.
    fn catch_up(&mut self, epoch: u64, executor: Option<Arc<[u8]>>) -> Result<()> {
        match executor.filter(|_| self.epoch < epoch) {
            Some(executor) => {
                let backend = self.driver.backend();
                guarded(backend, || self.driver.adopt(&executor)).map(|()| self.epoch = epoch)
            }
            None => Ok(()),
        }
    }

    /// Runs a job: brings the executor up to date, validates with the
    /// reads recorded and the logs captured, or installs an upgrade.
    fn run(&mut self, taken: Taken) -> Done {
        let Taken { block, index, attempt, job, tx, epoch: current, executor } = taken;
        let driver = &mut self.driver;
        let backend = driver.backend();
        let mut fit = None;
        let (result, reads, logs, took) = match job {
            Job::Validate => {
                let Input { txs, first, state } = tx.expect("taken with its block");
                let adopted = self.catch_up(current, executor);
                let driver = &mut self.driver;
                let recorder = Arc::new(Recorder { state, reads: Mutex::new(Vec::new()) });
                let started = Instant::now();
                let (result, logs) = capture_logs(|| {
                    adopted?;
                    let shared_state: SharedState = recorder.clone();
                    guarded(backend, || driver.validate_at(&txs[index], shared_state, first + index as u64))
                });
                let took = started.elapsed();
                let reads = std::mem::take(&mut *lock(&recorder.reads));
                (result, reads, logs, took)
            }
            Job::Upgrade { executor, state, epoch: next } => {
                let (result, logs) = capture_logs(|| guarded(backend, || driver.upgrade(&executor, state)));
                let result = match result {
                    Ok(()) => {
                        self.epoch = next;
                        fit = Some(driver.module_shared().drivers_that_fit(driver.limits(), usize::MAX));
                        Ok(Verdict::Approved)
                    }
                    Err(e) if e.is_host_failure() => Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "upgrade failed; the old executor stays");
                        Ok(Verdict::rejected(Rejection::UpgradeFailed))
                    }
                };
                (result, Vec::new(), logs, Duration::ZERO)
            }
        };
        Done { block, index, attempt, epoch: self.epoch, result, reads, logs, took, fit }
    }
}

/// Runs `f`, turning a panic that escaped the driver's own guards into a
/// host failure, so the committer always gets an answer.
fn guarded<T>(backend: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(Error::HostFailure {
            backend,
            message: format!("a worker panicked: {}", crate::error::panic_message(&*panic)),
        })
    })
}
