//! Every compiled-in backend gives the same verdicts and final state, under
//! every policy, for the default and the hostile executor ("inconsistent
//! output" otherwise, naming both backends and both digests).

use executor_core::PersistencePolicy;
use peer::backends;
use peer::run::{Executor, RunSettings, run};

fn settings(executor: Executor, policy: &str) -> RunSettings {
    RunSettings {
        backend: backends::compiled_in()[0],
        policy: policy.parse::<PersistencePolicy>().unwrap(),
        executor,
        transactions: 600,
        block_size: 25,
        seed: 7,
        limits: Default::default(),
        recycle_watermark: None,
    }
}

fn assert_consistent(executor: Executor) {
    for policy in ["fresh", "every-tx:1", "every-tx:7", "every-block:1", "until-crash"] {
        let mut first: Option<(String, String, String)> = None;
        for backend in backends::compiled_in() {
            let mut s = settings(executor.clone(), policy);
            s.backend = backend;
            let r = run(&s, &mut |_| {}).unwrap_or_else(|e| panic!("{backend} {policy}: {e}"));
            let got = (r.backend.clone(), r.verdict_digest.clone(), r.state_digest.clone());
            match &first {
                None => first = Some(got),
                Some(f) => assert!(
                    f.1 == got.1 && f.2 == got.2,
                    "inconsistent output under {policy} for {}: {} gives verdicts {} state {}, {} gives verdicts {} state {}",
                    executor.name,
                    f.0,
                    f.1,
                    f.2,
                    got.0,
                    got.1,
                    got.2
                ),
            }
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
    assert_consistent(Executor::from_file(std::path::Path::new(path)).unwrap());
}
