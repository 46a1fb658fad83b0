//! In-order parallel validation: a block's transactions validated on N
//! workers with exactly the verdicts and final state of a one-thread run.
//!
//! Under `every-tx:1` (and `fresh`) every transaction runs on a blank
//! instance, so its verdict is a function of the executor, the transaction
//! and the values `host.state_get` returned — nothing else. Workers
//! therefore run transactions optimistically, each against the newest state
//! committed when it started, recording every answer `state_get` gave
//! (found, absent, or a length only: the whole value is kept). The caller's
//! thread commits in block order: an execution stands at its position only
//! if it ran the executor in force there and every key it read still has,
//! in the state after the transactions before it, the value it read — read
//! again from the embedder's [`WorldState`] at commit, whatever the
//! embedder reported. Otherwise the transaction runs again: at once on the
//! first idle worker, against the newest state, as soon as the staleness is
//! seen (when the execution comes back, or when a commit changes what it
//! read), and at its turn against the exact state there, which cannot
//! change before it commits.
//!
//! An approved upgrade runs `executor_migrate` on one worker at its commit
//! position (its verdict may become `upgrade_failed` there); every worker
//! then installs the new executor before its next execution, and every
//! execution of the old one after that position runs again. `host.log`
//! lines are held per execution and emitted only for the committed one, in
//! order; audits are chosen by committed position
//! ([`Driver::validate_at`]). Verdict counters count committed verdicts;
//! work counters (blanks, builds, audits) count every execution, so they
//! may differ with the number of workers.
//!
//! Under other policies an instance carries what one transaction left to
//! the next, so a verdict depends on which transactions ran before it on
//! the same instance: those run on one thread
//! ([`BlockValidator::is_parallel`] says which).

mod worker;

use crate::verdict::Verdict;
use crate::{
    Driver, DriverConfig, Error, ExecutorHost, PersistencePolicy, PreparedModule, Result, SharedState, StateView, Stats,
};
use serde::Serialize;
use std::sync::Arc;
use worker::{Done, Job, ReadSet, Workers, lock, stale};

/// The world state a block is validated against, owned by the embedder.
/// Its [`StateView::get`] answers for the state as it is now, after every
/// transaction applied so far; commits read it to check executions.
pub trait WorldState: StateView {
    /// The state as it is now, shared read-only with executions (each
    /// holds it while it runs, possibly while later transactions are
    /// applied). Take it often: make it cheap — an `Arc` of a persistent
    /// map — as a copy per approved transaction would cost more than
    /// validation saves.
    fn snapshot(&self) -> SharedState;

    /// Applies the approved transaction `tx`, in block order. Returns the
    /// keys it wrote if the embedder knows them (`None`: unknown). The
    /// report only saves checks of executions waiting for their turn; every
    /// commit reads its keys again, so a wrong report cannot change a
    /// verdict.
    fn apply(&mut self, tx: &[u8]) -> Option<Vec<Vec<u8>>>;

    /// [`WorldState::apply`] for the block's `index`-th transaction (0-based),
    /// which the validator always knows: for embedders whose writes are
    /// kept per position (a replayed recording) rather than computed from
    /// the transaction's bytes.
    fn apply_at(&mut self, index: usize, tx: &[u8]) -> Option<Vec<Vec<u8>>> {
        let _ = index;
        self.apply(tx)
    }
}

/// What in-order parallel validation did beyond one run per transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParallelStats {
    /// Transaction runs started, re-executions included.
    pub executions: u64,
    /// Runs started again: a value read changed before the transaction's
    /// commit, or an upgrade changed the executor.
    pub reexecutions: u64,
    /// Runs started on a worker that the committer took over, validating
    /// the transaction itself (transactions too short to run in parallel:
    /// see [`DIRECT_BELOW`]).
    pub taken_over: u64,
    /// Of the executions that came back, those found to have read a value
    /// that a commit before theirs changed.
    pub conflicts: u64,
    /// Rounds of execution the blocks needed: per block, one plus the most
    /// times any of its transactions was started again.
    pub waves: u64,
}

/// Commits between two adjustments of how far executions run ahead.
const ADAPT_EVERY: usize = 32;

/// Transactions that run for less than this on average are validated by
/// the committer alone (see [`Progress::adapt`]): measured on 2 cores, the
/// commit's checks and hand-offs cost a few microseconds per transaction.
const DIRECT_BELOW: std::time::Duration = std::time::Duration::from_micros(10);

/// Validates whole blocks in order on one or more workers.
pub struct BlockValidator {
    mode: Mode,
    progress: Progress,
}

/// What the commits so far established (parallel mode).
struct Progress {
    /// Verdict counters of what was committed.
    committed: Stats,
    parallel: ParallelStats,
    /// The executor in force: 0 for the one loaded, +1 per upgrade.
    epoch: u64,
    /// Blocks started (tells workers' late answers apart).
    block: u64,
    /// How far beyond the commit position executions start (see
    /// [`Progress::adapt`]); 0 until the first block sets it.
    lookahead: usize,
    /// Blocks to stay without speculation before trying it again, and how
    /// many the next failed try makes it.
    hold: u32,
    backoff: u32,
    /// Validation time and runs measured since the last adjustment.
    ran: std::time::Duration,
    runs: u32,
    /// Transactions are too short for parallel runs to pay: the committer
    /// validates each at its turn itself (see [`Progress::adapt`]).
    direct: bool,
    /// What changed of what was asked, and why.
    notes: Vec<String>,
}

enum Mode {
    /// One driver, exactly as a one-thread peer runs it.
    Sequential(Box<Driver>),
    /// Workers, each its own driver.
    Parallel(Box<Workers>),
}

impl std::fmt::Debug for BlockValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockValidator")
            .field("threads", &self.threads())
            .field("parallel", &self.progress.parallel)
            .finish_non_exhaustive()
    }
}

/// State of the block being committed.
struct Block {
    /// Answers back and not yet committed, by position.
    results: Vec<Option<Done>>,
    /// The keys each position's latest execution read (from any attempt):
    /// what its transaction probably writes, for [`Progress::waits`].
    known: Vec<ReadSet>,
    /// The current attempt at each position.
    attempts: Vec<u32>,
    /// Whether the current attempt was started at its turn (against the
    /// exact state there).
    exact: Vec<bool>,
    /// Stale positions held back until what they read is committed.
    deferred: Vec<bool>,
    /// Positions started so far (a prefix of the block).
    dispatched: usize,
    /// The most times a transaction was started again.
    deepest: u32,
}

impl BlockValidator {
    /// Whether `policy` lets transactions run in parallel: only where each
    /// runs on a blank instance (`every-tx:1`, `fresh`).
    pub fn runs_in_parallel(policy: PersistencePolicy) -> bool {
        match policy {
            PersistencePolicy::Fresh => true,
            PersistencePolicy::EveryTransactions(n) => n.get() == 1,
            _ => false,
        }
    }

    /// Loads `executor` under `config` on one worker per host (each its
    /// own engine host: engines such as wasmtime's pooling allocator bound
    /// the instances per host), in parallel, each thread with the stack
    /// the stack budget needs. Under a policy that cannot run in parallel
    /// ([`BlockValidator::runs_in_parallel`]) only the first host is used,
    /// as one [`Driver`] on the caller's thread.
    pub fn new(hosts: Vec<Arc<dyn ExecutorHost>>, executor: &[u8], config: DriverConfig) -> Result<Self> {
        assert!(!hosts.is_empty(), "a validator needs at least one host");
        let limits = hosts[0].limits().clone();
        let mut notes = Vec::new();
        let (mode, first) = if Self::runs_in_parallel(config.policy) {
            // Workers judge upgrades; the commit installs them.
            let config = DriverConfig { verdicts_only: true, ..config };
            let workers = Workers::start(hosts, executor, &config)?;
            let (first, module) = workers.status().swap_remove(0);
            let fit = module.drivers_that_fit(&limits, workers.len());
            if fit < workers.len() {
                let note = format!(
                    "memory_cap fits {fit} driver(s) of this executor: {} worker(s) stopped",
                    workers.len() - fit
                );
                tracing::warn!("{note}");
                notes.push(note);
                workers.retire(fit);
            }
            (Mode::Parallel(Box::new(workers)), first)
        } else {
            let host = hosts.into_iter().next().expect("checked non-empty");
            let driver = Driver::new(host, executor, config)?;
            let first = driver.stats().clone();
            (Mode::Sequential(Box::new(driver)), first)
        };
        let committed = Stats::new(first.cache, first.compile_time);
        let progress = Progress {
            committed,
            parallel: ParallelStats::default(),
            epoch: 0,
            block: 0,
            lookahead: 0,
            hold: 0,
            backoff: 1,
            ran: std::time::Duration::ZERO,
            runs: 0,
            direct: false,
            notes,
        };
        Ok(BlockValidator { mode, progress })
    }

    /// Threads validating: the workers, or 1.
    pub fn threads(&self) -> usize {
        match &self.mode {
            Mode::Sequential(_) => 1,
            Mode::Parallel(workers) => workers.len(),
        }
    }

    /// Whether blocks are validated by workers (the policy allows it).
    pub fn is_parallel(&self) -> bool {
        matches!(self.mode, Mode::Parallel(_))
    }

    /// Validates `txs` in order against `world`, applying each approved one
    /// with [`WorldState::apply`] before the next is committed, and ends
    /// the block; the verdicts, in order — those of a one-thread run.
    ///
    /// `Err` only for host failures (the block is then abandoned part-way:
    /// `world` holds the transactions committed before the failure).
    pub fn validate_block(&mut self, txs: &[Vec<u8>], world: &mut dyn WorldState) -> Result<Vec<Verdict>> {
        if let Mode::Sequential(driver) = &mut self.mode {
            let mut verdicts = Vec::with_capacity(txs.len());
            for (i, tx) in txs.iter().enumerate() {
                let verdict = driver.validate(tx, world.snapshot())?;
                if verdict == Verdict::Approved {
                    world.apply_at(i, tx);
                }
                verdicts.push(verdict);
            }
            driver.end_block();
            return Ok(verdicts);
        }
        let Mode::Parallel(workers) = &mut self.mode else { unreachable!("the sequential mode returned") };
        let verdicts = self.progress.commit_block(workers, txs, world);
        workers.clear();
        self.progress.committed.blocks += 1;
        verdicts
    }

    /// Counters: committed verdicts, blocks and upgrades, and the work of
    /// every worker summed (see the module docs).
    pub fn stats(&self) -> Stats {
        match &self.mode {
            Mode::Sequential(driver) => driver.stats().clone(),
            Mode::Parallel(workers) => {
                let status = workers.status();
                let mut stats = status[0].0.clone();
                status[1..].iter().for_each(|(other, _)| stats.add_work(other));
                let c = &self.progress.committed;
                stats.transactions = c.transactions;
                stats.approved = c.approved;
                stats.denied = c.denied;
                stats.rejected = c.rejected.clone();
                stats.blocks = c.blocks;
                stats.upgrades = c.upgrades;
                stats
            }
        }
    }

    /// What the validator changed of what was asked (workers stopped at
    /// an upgrade that fewer fit of), and why.
    pub fn notes(&self) -> &[String] {
        &self.progress.notes
    }

    /// What parallel validation did (all zero on one thread).
    pub fn parallel_stats(&self) -> ParallelStats {
        self.progress.parallel
    }

    /// The executor in force.
    pub fn module(&self) -> Arc<PreparedModule> {
        match &self.mode {
            Mode::Sequential(driver) => driver.module_shared(),
            Mode::Parallel(workers) => workers.status().swap_remove(0).1,
        }
    }
}

impl Progress {
    /// The commit loop of one block (parallel mode).
    fn commit_block(
        &mut self,
        workers: &mut Workers,
        txs: &[Vec<u8>],
        world: &mut dyn WorldState,
    ) -> Result<Vec<Verdict>> {
        let n = txs.len();
        self.block += 1;
        {
            let mut queue = lock(&workers.shared.queue);
            queue.jobs.clear();
            queue.block = self.block;
            queue.txs = Arc::new(txs.to_vec());
            queue.first = self.committed.transactions;
            queue.attempts = vec![0; n];
            queue.latest = Some(world.snapshot());
        }
        let mut block = Block {
            results: (0..n).map(|_| None).collect(),
            known: vec![Vec::new(); n],
            attempts: vec![0; n],
            exact: vec![false; n],
            deferred: vec![false; n],
            dispatched: 0,
            deepest: 0,
        };
        let most = 4 * workers.len() + 4;
        if self.lookahead == 0 {
            self.lookahead = most;
        }
        let mut before = self.parallel;
        let mut verdicts = Vec::with_capacity(n);
        while verdicts.len() < n {
            let j = verdicts.len();
            if self.direct && !block.deferred[j] && block.results[j].is_none() {
                let state = world.snapshot();
                let (result, took) = workers.direct(&txs[j], state, self.committed.transactions);
                self.timed(took);
                self.parallel.executions += 1;
                // A run started before the switch is superseded.
                self.parallel.taken_over += u64::from(j < block.dispatched);
                block.dispatched = block.dispatched.max(j + 1);
                block.attempts[j] += 1;
                lock(&workers.shared.queue).attempts[j] = block.attempts[j];
                let verdict = self.commit(workers, txs, j, result?, &[], &mut block, world)?;
                self.committed_one(&mut verdicts, verdict, &mut before, most);
                continue;
            }
            while block.dispatched < n.min(j + self.lookahead) {
                workers.shared.push(block.dispatched, 0, Job::Validate);
                block.dispatched += 1;
                self.parallel.executions += 1;
            }
            if block.deferred[j] {
                self.restart(workers, j, true, &mut block);
            }
            let Some(done) = block.results[j].take() else {
                let done = workers.next();
                self.arrived(workers, done, j, &mut block, &*world);
                continue;
            };
            let Done { result, reads, logs, epoch, took, .. } = done;
            self.timed(took);
            let verdict = result?;
            if epoch != self.epoch || stale(world, &reads) {
                if block.exact[j] {
                    return Err(Error::InconsistentState(format!(
                        "transaction {j} of the block read, against the state's snapshot at its turn, values its \
                         reads there do not return"
                    )));
                }
                self.parallel.conflicts += u64::from(epoch == self.epoch);
                self.restart(workers, j, true, &mut block);
                continue;
            }
            let verdict = self.commit(workers, txs, j, verdict, &logs, &mut block, world)?;
            self.committed_one(&mut verdicts, verdict, &mut before, most);
        }
        self.parallel.waves += 1 + u64::from(block.deepest);
        Ok(verdicts)
    }

    /// Counts a committed verdict; every [`ADAPT_EVERY`] of them, adapts.
    fn committed_one(
        &mut self,
        verdicts: &mut Vec<Verdict>,
        verdict: Verdict,
        before: &mut ParallelStats,
        most: usize,
    ) {
        verdicts.push(verdict);
        if verdicts.len().is_multiple_of(ADAPT_EVERY) {
            self.adapt(before, most);
            *before = self.parallel;
        }
    }

    /// Adds a validation's run time to the period's.
    fn timed(&mut self, took: std::time::Duration) {
        self.ran += took;
        self.runs += 1;
    }

    /// Sets how far ahead of the commit executions start, from the runs
    /// started again per transaction committed since the last call (every
    /// [`ADAPT_EVERY`] commits). Without
    /// conflicts, far enough to keep every worker busy while the committer
    /// waits for one (`most`); where most speculative runs are wasted —
    /// every transaction reading what the one before it wrote — they only
    /// take cores from the runs the commit waits for, so speculation
    /// shrinks, down to the transaction at the commit alone (the
    /// committer's own worker then runs the block as one thread would),
    /// and grows back as conflicts fade — tried again after one period,
    /// then after twice as many each time the try fails (at most 64).
    ///
    /// And whether to run in parallel at all: where a transaction runs for
    /// less than [`DIRECT_BELOW`], recording its reads, checking them and
    /// handing it between threads cost more than a second core saves, so
    /// the committer validates each at its turn against the exact state —
    /// nothing to record or check, as on one thread — until the runs it
    /// measures grow longer.
    fn adapt(&mut self, before: &ParallelStats, most: usize) {
        if self.runs > 0 {
            self.direct = self.ran / self.runs < DIRECT_BELOW;
        }
        (self.ran, self.runs) = (std::time::Duration::ZERO, 0);
        if self.direct {
            return;
        }
        // Runs started again per transaction committed in the period: 1
        // when every transaction waited on the one before it.
        let wasted = self.parallel.reexecutions - before.reexecutions;
        let share = wasted as f64 / ADAPT_EVERY as f64;
        if share > 0.7 {
            if self.lookahead <= 2 {
                self.backoff = (self.backoff * 2).min(64);
                self.hold = self.backoff;
            }
            self.lookahead = (self.lookahead / 2).max(1);
        } else if share < 0.3 {
            if self.lookahead == 1 && self.hold > 0 {
                self.hold -= 1;
                return;
            }
            if self.lookahead > 1 {
                self.backoff = 1;
            }
            self.lookahead = (self.lookahead * 2).min(most);
        }
    }

    /// An answer came back while the committer waits at position `j`:
    /// kept for its turn, ignored if superseded, or — if already stale —
    /// started again or held back.
    fn arrived(&mut self, workers: &mut Workers, done: Done, j: usize, block: &mut Block, world: &dyn WorldState) {
        if done.block != self.block {
            return; // a previous block's
        }
        let index = done.index;
        if done.result.is_ok() {
            block.known[index].clone_from(&done.reads);
        }
        if done.attempt != block.attempts[index] {
            return; // superseded
        }
        if index > j && done.result.is_ok() {
            if done.epoch != self.epoch {
                self.restart(workers, index, false, block);
                return;
            }
            if stale(world, &done.reads) {
                self.parallel.conflicts += 1;
                self.retry(workers, index, j, block, world);
                return;
            }
        }
        block.results[index] = Some(done);
    }

    /// Position `index`, found stale while `j` waits to commit: started
    /// again now, or — if a transaction between them last read a key whose
    /// change made it stale (and so probably writes it) — held back until
    /// that one has committed: running it before would be wasted.
    fn retry(&mut self, workers: &mut Workers, index: usize, j: usize, block: &mut Block, world: &dyn WorldState) {
        block.results[index] = None;
        if Self::waits(index, j, block, world) {
            block.deferred[index] = true;
        } else {
            self.restart(workers, index, false, block);
        }
    }

    /// Whether stale position `index` waits for an uncommitted position in
    /// `from..index` (see [`Progress::retry`]).
    fn waits(index: usize, from: usize, block: &Block, world: &dyn WorldState) -> bool {
        let changed = block.known[index].iter().filter(|(key, value)| world.get(key) != value.as_deref());
        changed
            .into_iter()
            .any(|(key, _)| block.known[from..index].iter().any(|reads| reads.iter().any(|(k, _)| k == key)))
    }

    /// Starts position `index` again; `at_turn`: it is the position being
    /// committed, so the state it will run against is exact.
    fn restart(&mut self, workers: &mut Workers, index: usize, at_turn: bool, block: &mut Block) {
        block.attempts[index] += 1;
        let attempt = block.attempts[index];
        block.deepest = block.deepest.max(attempt);
        block.exact[index] = at_turn;
        block.deferred[index] = false;
        block.results[index] = None;
        lock(&workers.shared.queue).attempts[index] = attempt;
        workers.shared.push(index, attempt, Job::Validate);
        self.parallel.executions += 1;
        self.parallel.reexecutions += 1;
    }

    /// Commits the execution at position `j`: emits its logs, installs an
    /// approved upgrade, counts the verdict, applies an approved
    /// transaction, and starts again (or holds back) what that made stale.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        workers: &mut Workers,
        txs: &[Vec<u8>],
        j: usize,
        verdict: Verdict,
        logs: &[crate::LogLine],
        block: &mut Block,
        world: &mut dyn WorldState,
    ) -> Result<Verdict> {
        logs.iter().for_each(|line| line.emit());
        let mut verdict = verdict;
        let mut upgraded = false;
        if verdict == Verdict::Approved
            && let Some(executor) = abi::upgrade_executor(&txs[j])
        {
            verdict = self.upgrade(workers, j, executor, block, &*world)?;
            upgraded = verdict == Verdict::Approved;
        }
        self.committed.count(&verdict);
        if verdict != Verdict::Approved {
            return Ok(verdict);
        }
        // No handle of ours keeps the old state shared during the apply,
        // and no job starts without the newest state: the queue stays
        // locked until it is published.
        let written = {
            let mut queue = lock(&workers.shared.queue);
            drop(queue.latest.take());
            let written = world.apply_at(j, &txs[j]);
            queue.latest = Some(world.snapshot());
            written
        };
        for k in j + 1..block.dispatched {
            let back = block.results[k].as_ref().filter(|d| d.result.is_ok());
            if upgraded {
                if back.is_some() {
                    self.restart(workers, k, false, block);
                }
                continue;
            }
            if let Some(done) = back {
                let touched = written
                    .as_ref()
                    .is_none_or(|keys| done.reads.iter().any(|(key, _)| keys.iter().any(|w| **w == **key)));
                if touched && stale(&*world, &done.reads) {
                    self.parallel.conflicts += 1;
                    self.retry(workers, k, j + 1, block, &*world);
                }
            } else if block.deferred[k] && !Self::waits(k, j + 1, block, &*world) {
                self.restart(workers, k, false, block);
            }
        }
        Ok(verdict)
    }

    /// Runs the approved upgrade at position `j` on the first free worker
    /// against the state there; on success every worker moves to the new
    /// executor. The upgrade's verdict: approved, or
    /// `rejected(upgrade_failed)`.
    fn upgrade(
        &mut self,
        workers: &mut Workers,
        j: usize,
        executor: &[u8],
        block: &mut Block,
        world: &dyn WorldState,
    ) -> Result<Verdict> {
        let executor: Arc<[u8]> = executor.into();
        block.attempts[j] += 1;
        let attempt = block.attempts[j];
        lock(&workers.shared.queue).attempts[j] = attempt;
        let state = world.snapshot();
        workers.shared.push(j, attempt, Job::Upgrade { executor: executor.clone(), state, epoch: self.epoch + 1 });
        let done = loop {
            let done = workers.next();
            if done.block == self.block && done.index == j && done.attempt == attempt {
                break done;
            }
            self.arrived(workers, done, j, block, world);
        };
        done.logs.iter().for_each(|line| line.emit());
        let verdict = done.result?;
        if let Some(fit) = done.fit.filter(|fit| *fit < workers.len()) {
            // The cap is checked at each upgrade too: fewer workers, never
            // another verdict.
            let note = format!(
                "memory_cap fits {fit} driver(s) of the executor installed at block {}: {} worker(s) stopped",
                self.block,
                workers.len() - fit
            );
            tracing::warn!("{note}");
            self.notes.push(note);
            workers.retire(fit);
        }
        if verdict == Verdict::Approved {
            self.epoch += 1;
            self.committed.upgrades += 1;
            let mut queue = lock(&workers.shared.queue);
            queue.epoch = self.epoch;
            queue.executor = Some(executor);
        }
        Ok(verdict)
    }
}
