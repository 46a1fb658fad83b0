//! The shared suite that defines a correct backend.
//!
//! Every case is a documented `pub fn` over a [`HostFactory`] — the library
//! knows only `core` — that asserts exact verdicts and counters. A backend's
//! own test file runs the whole suite with one line:
//!
//! ```ignore
//! conformance::suite!(backend_wasmi::host);
//! ```
//!
//! so `cargo test -p backend-wasmi` runs every case on wasmi. Fixtures live
//! in `executors/` at the repository root.
#![warn(missing_docs)]

pub mod cache;
pub mod cases;
pub mod determinism;
pub mod fixtures;
pub mod fuzz;
pub mod load_budget;
pub mod snapshot;

pub use executor_core::HostFactory;
use executor_core::{Driver, DriverConfig, Limits, PersistencePolicy, SharedState, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;

/// World state with the given entries.
pub fn state(entries: &[(&[u8], &[u8])]) -> SharedState {
    Arc::new(entries.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect::<BTreeMap<_, _>>())
}

/// Loads `executor` on the backend under `policy` with `limits`, panicking
/// with the load error if it fails.
pub fn load(factory: HostFactory, executor: &[u8], policy: PersistencePolicy, limits: Limits) -> Driver {
    Driver::new(factory(limits), executor, DriverConfig { policy, ..Default::default() })
        .unwrap_or_else(|e| panic!("load failed: {e}"))
}

/// Validates each payload in turn against empty world state.
pub fn run(driver: &mut Driver, payloads: &[&[u8]]) -> Vec<Verdict> {
    let empty = state(&[]);
    payloads.iter().map(|p| driver.validate(p, empty.clone()).unwrap_or_else(|e| panic!("host failure: {e}"))).collect()
}

/// Runs every case of [`cases`] as a `#[test]` on the backend made by
/// `$factory` (a [`HostFactory`]). Adding a case here adds it for every
/// backend.
#[macro_export]
macro_rules! suite {
    ($factory:path) => {
        $crate::case_tests!(cases, $factory;
            every_rejection_kind,
            memory_semantics,
            growth_guards_decide_out_of_memory,
            memory_limit_is_usable_to_the_last_page,
            host_sees_memory_grown_within_a_call,
            growth_loops_never_exhaust_the_host_stack,
            alloc_misbehaviour,
            deny_reasons,
            state_get_end_to_end,
            a_panicking_state_view_is_a_host_failure,
            blank_restores_every_kind_of_state,
            every_tx_pattern,
            every_block_pattern,
            until_crash_pattern,
            fresh_pattern,
            recycle_restarts_the_count,
            watermark_recycles,
            purge_recycles,
            load_errors,
            init_failures,
            segments_out_of_bounds_are_load_errors,
            engine_limits_hold_at_the_edge,
            load_limits_hold_at_the_edge,
            default_executor_judges_the_ledger,
            many_instances_do_not_exhaust_the_store,
            fuel_follows_the_documented_costs,
            upgrades_install_or_fail_cleanly,
            audit_finds_state_leaks,
            memory_cap_is_checked_at_load,
            every_write_is_undone_by_the_next_blank,
            a_trap_in_a_group_of_stores_leaves_no_wild_mark,
            a_module_past_the_barriers_budget_blanks_by_rebuilding,
            auto_drops_the_barrier_when_blanks_rebuild_anyway,
            auto_switches_only_where_the_instance_is_replaced,
            parallel_validation_commits_one_thread_verdicts,
            parallel_validation_reruns_only_what_read_changed,
            workers_have_the_stack_the_budget_needs,
            parallel_upgrades_keep_only_the_workers_that_fit,
        );
        $crate::case_tests!(snapshot, $factory;
            snapshots_restore_exactly_what_init_makes,
            unportable_blank_states_run_init,
            restart_restores_the_blank_snapshot,
        );
    };
}

/// One `#[test]` per named case of module `$module` on `$factory`: the
/// body of [`suite!`] and [`cache_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! case_tests {
    ($module:ident, $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::$module::$case($factory)
            }
        )*
    };
}

/// The memory-bound cases — [`cases::load_run_drop_does_not_leak`],
/// [`cases::growing_executor_stays_bounded`], then
/// [`cases::oom_attempts_are_survived`] — as one `#[test]` that runs them
/// in turn. Put it in a test binary of its own (e.g. `tests/leak.rs`):
/// both read the process's RSS, which any other test would move.
#[macro_export]
macro_rules! memory_suite {
    ($factory:path) => {
        #[test]
        fn bounded_memory_and_no_leaks() {
            $crate::cases::load_run_drop_does_not_leak($factory);
            $crate::cases::growing_executor_stays_bounded($factory);
            $crate::cases::oom_attempts_are_survived($factory);
        }
    };
}
