//! Every compiled-in backend gives the same verdicts and final state, under
//! every policy, for the default and the hostile executor ("inconsistent
//! output" otherwise, naming the first differing transaction, both
//! backends and both verdicts).

use executor_core::PersistencePolicy;
use executor_core::Verdict;
use peer::backends;
use peer::run::{Executor, RunSettings, run_observed};

fn settings(executor: Executor, policy: &str) -> RunSettings {
    RunSettings {
        transactions: 600,
        block_size: 25,
        seed: 7,
        ..RunSettings::new(backends::compiled_in()[0], policy.parse::<PersistencePolicy>().unwrap(), executor)
    }
}

fn assert_consistent(executor: Executor) {
    for policy in ["fresh", "every-tx:1", "every-tx:7", "every-block:1", "until-crash"] {
        let mut first: Option<(peer::BackendKind, Vec<Verdict>, String)> = None;
        for backend in backends::compiled_in() {
            let mut s = settings(executor.clone(), policy);
            s.backend = backend;
            let mut verdicts = Vec::new();
            let r = run_observed(&s, &mut |_| {}, &mut |v| verdicts.push(v.clone()))
                .unwrap_or_else(|e| panic!("{backend} {policy}: {e}"));
            let Some((base, expected, state)) = &first else {
                first = Some((r.backend, verdicts, r.state_digest));
                continue;
            };
            if let Some(i) = (0..expected.len().max(verdicts.len())).find(|i| expected.get(*i) != verdicts.get(*i)) {
                panic!(
                    "inconsistent output under {policy} for {} at transaction {i}: {base} gives {:?}, {} gives {:?}",
                    executor.name,
                    expected.get(i),
                    r.backend,
                    verdicts.get(i)
                );
            }
            assert_eq!(
                state, &r.state_digest,
                "inconsistent output under {policy}: final state of {base} vs {}",
                r.backend
            );
        }
    }
}

#[test]
fn default_executor_agrees_on_every_backend() {
    assert_consistent(Executor::default_executor());
}

#[test]
fn hostile_executor_agrees_on_every_backend() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../executors/fixtures/hostile.wat");
    assert_consistent(
        Executor::from_file(std::path::Path::new(path), executor_core::Limits::default().module.bytes).unwrap(),
    );
}
