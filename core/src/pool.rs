//! Parallel pre-validation: a peer checks its queue before building a
//! block. Each worker thread keeps one warm instance and blanks it after
//! every transaction (`every-tx:1`), and every transaction of a batch is
//! validated against the same world state (the block's start), so a
//! verdict depends only on the transaction and that state: the verdicts
//! equal a one-thread run's by construction, whatever the thread count or
//! the split.

use crate::{Driver, DriverConfig, ExecutorHost, PersistencePolicy, Result, SharedState, Verdict};
use std::sync::Arc;

/// Workers validating batches of transactions in parallel.
pub struct ExecutorPool {
    workers: Vec<Driver>,
    /// Native stack of each worker thread.
    stack: usize,
}

impl ExecutorPool {
    /// One worker per host (give each its own: engines such as wasmtime's
    /// pooling allocator bound the instances per host), each loading
    /// `executor` under `config` with the policy forced to `every-tx:1`
    /// and upgrades judged, not installed.
    pub fn new(hosts: Vec<Arc<dyn ExecutorHost>>, executor: &[u8], config: &DriverConfig) -> Result<Self> {
        assert!(!hosts.is_empty(), "a pool needs at least one worker");
        let stack = crate::instrument::thread_stack_bytes(hosts[0].limits().max_stack);
        let config = DriverConfig {
            policy: PersistencePolicy::default(),
            verdicts_only: true,
            audit_every: None,
            ..config.clone()
        };
        let workers = hosts.into_iter().map(|h| Driver::new(h, executor, config.clone())).collect::<Result<_>>()?;
        Ok(ExecutorPool { workers, stack })
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Validates `txs` against `state`, in contiguous slices, one per
    /// worker thread; the verdicts in the order of `txs`. A host failure in
    /// any worker is the error.
    pub fn prevalidate(&mut self, txs: &[Vec<u8>], state: &SharedState) -> Result<Vec<Verdict>> {
        let (stack, backend) = (self.stack, self.workers[0].backend());
        let per = txs.len().div_ceil(self.workers.len()).max(1);
        let results: Vec<Result<Vec<Verdict>>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .zip(txs.chunks(per))
                .map(|(worker, slice)| {
                    std::thread::Builder::new()
                        .name("prevalidate".into())
                        .stack_size(stack)
                        .spawn_scoped(s, move || slice.iter().map(|tx| worker.validate(tx, state.clone())).collect())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().expect("a worker panicked outside the guarded host calls"),
                    Err(e) => Err(crate::Error::HostFailure {
                        backend,
                        message: format!("cannot start a worker thread: {e}"),
                    }),
                })
                .collect()
        });
        let mut verdicts = Vec::with_capacity(txs.len());
        for r in results {
            verdicts.extend(r?);
        }
        Ok(verdicts)
    }

    /// Transactions validated by all workers so far.
    pub fn transactions(&self) -> u64 {
        self.workers.iter().map(|w| w.stats().transactions).sum()
    }
}
