//! The driver's handling of host failures, panics and blank fallbacks, on a
//! scripted backend (no engine): what no real engine can be made to do on
//! demand.

use executor_core::*;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What the next `executor_validate` call does.
#[derive(Clone, Debug)]
enum Step {
    Return(i32),
    HostError,
    Panic,
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    blank: VecDeque<Result<Blanked, CallError>>,
    instances: u64,
    /// The engine's compiler panics (an engine bug on a checked module).
    compiler_panics: bool,
}

struct MockHost {
    info: HostInfo,
    script: Arc<Mutex<Script>>,
}

struct MockCompiled(Arc<Mutex<Script>>);

struct MockInstance {
    env: HostEnv,
    memory: Vec<u8>,
    books: Vec<u8>,
    script: Arc<Mutex<Script>>,
}

impl ExecutorHost for MockHost {
    fn info(&self) -> &HostInfo {
        &self.info
    }
    fn compile(&self, _: &PreparedModule) -> Result<Arc<dyn CompiledExecutor>> {
        if self.script.lock().unwrap().compiler_panics {
            panic!("scripted compiler panic");
        }
        Ok(Arc::new(MockCompiled(self.script.clone())))
    }
}

impl CompiledExecutor for MockCompiled {
    fn instantiate(&self, env: HostEnv, _: InstanceMode) -> Result<Box<dyn ExecutorInstance>, CallError> {
        self.0.lock().unwrap().instances += 1;
        let (memory, books) = (vec![0; 65536], vec![0; env.layout().books]);
        Ok(Box::new(MockInstance { env, memory, books, script: self.0.clone() }))
    }
}

impl ExecutorInstance for MockInstance {
    fn call(&mut self, export: Export, _: &[i32]) -> Result<Option<i32>, CallError> {
        match export {
            Export::Alloc => Ok(Some(1024)),
            Export::Validate => {
                let step = self.script.lock().unwrap().steps.pop_front().unwrap_or(Step::Return(0));
                match step {
                    Step::Return(v) => Ok(Some(v)),
                    Step::HostError => Err(CallError::Host("scripted engine failure".into())),
                    Step::Panic => panic!("scripted backend panic"),
                }
            }
            _ => Ok(None),
        }
    }
    fn env(&mut self) -> &mut HostEnv {
        &mut self.env
    }
    fn memories(&mut self) -> Memories<'_> {
        Memories { guest: &mut self.memory, books: &mut self.books }
    }
    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv) {
        (Memories { guest: &mut self.memory, books: &mut self.books }, &mut self.env)
    }
    fn mark_blank(&mut self) -> Result<(), CallError> {
        Ok(())
    }
    fn blank(&mut self) -> Result<Blanked, CallError> {
        self.script.lock().unwrap().blank.pop_front().unwrap_or(Ok(Blanked::Restored))
    }
    fn memory_size(&mut self) -> u64 {
        self.memory.len() as u64
    }
}

const EXECUTOR: &str = r#"(module (memory (export "memory") 1)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#;

fn driver(policy: PersistencePolicy, steps: &[Step]) -> (Driver, Arc<Mutex<Script>>) {
    let script = Arc::new(Mutex::new(Script { steps: steps.iter().cloned().collect(), ..Default::default() }));
    let host =
        Arc::new(MockHost { info: HostInfo { name: "mock", limits: Limits::default() }, script: script.clone() });
    let d = Driver::new(host, EXECUTOR.as_bytes(), DriverConfig { policy, ..Default::default() }).unwrap();
    (d, script)
}

fn state() -> SharedState {
    Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new())
}

#[test]
fn a_host_failure_is_retried_once_on_a_rebuilt_instance() {
    for failure in [Step::HostError, Step::Panic] {
        let (mut d, script) = driver(PersistencePolicy::UntilCrash, &[failure.clone(), Step::Return(1)]);
        // Loading may build more than one (an untracked executor's snapshot
        // is a diff against a pristine instance).
        let loaded = script.lock().unwrap().instances;
        let v = d.validate(b"tx", state()).unwrap();
        assert_eq!(v, Verdict::Denied { reason: String::new() }, "{failure:?}: the retry's verdict stands");
        assert_eq!(d.stats().host_failures, 1);
        assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::HostFailure), Some(&1));
        assert_eq!(script.lock().unwrap().instances, loaded + 1, "never reuse a poisoned instance");
        assert_eq!(d.validate(b"tx", state()).unwrap(), Verdict::Approved);
    }
}

#[test]
fn a_second_host_failure_is_an_error_never_a_verdict() {
    let (mut d, script) = driver(PersistencePolicy::UntilCrash, &[Step::HostError, Step::Panic]);
    let loaded = script.lock().unwrap().instances;
    let e = d.validate(b"tx", state()).unwrap_err();
    assert!(e.is_host_failure(), "{e}");
    assert!(e.to_string().contains("scripted backend panic"), "{e}");
    assert_eq!(d.stats().transactions, 0, "no verdict was given");
    // The embedder may go on: the next transaction gets a rebuilt instance.
    assert_eq!(d.validate(b"tx", state()).unwrap(), Verdict::Approved);
    // The first instance, the retry's, and the next transaction's.
    assert_eq!(script.lock().unwrap().instances, loaded + 2);
}

#[test]
fn verdict_values_other_than_0_and_1_are_bad_verdicts() {
    let (mut d, _) = driver(PersistencePolicy::UntilCrash, &[Step::Return(2), Step::Return(-1), Step::Return(0)]);
    for expected in [Rejection::BadVerdict, Rejection::BadVerdict] {
        assert_eq!(d.validate(b"tx", state()).unwrap(), Verdict::rejected(expected));
    }
    assert_eq!(d.validate(b"tx", state()).unwrap(), Verdict::Approved);
    assert_eq!(d.stats().recycles_by_cause.get(&RecycleCause::BadVerdict), Some(&2));
}

#[test]
fn a_blank_that_cannot_restore_rebuilds_and_still_counts_as_a_blank() {
    let (mut d, script) = driver(PersistencePolicy::default(), &[]);
    script.lock().unwrap().blank.extend([Ok(Blanked::NeedsRebuild), Err(CallError::Host("restore failed".into()))]);
    for _ in 0..4 {
        assert_eq!(d.validate(b"tx", state()).unwrap(), Verdict::Approved);
    }
    let s = d.stats();
    assert_eq!((s.blanks, s.recycles, s.host_failures), (3, 0, 1));
    assert_eq!(script.lock().unwrap().instances, 3, "load + two rebuilding blanks");
}

#[test]
fn the_world_state_is_released_after_each_call() {
    let (mut d, _) = driver(PersistencePolicy::UntilCrash, &[]);
    let s = state();
    d.validate(b"tx", s.clone()).unwrap();
    assert_eq!(Arc::strong_count(&s), 1, "the embedder can mutate its state again");
}

#[test]
fn a_compiler_panic_fails_the_load_and_not_the_process() {
    let script = Arc::new(Mutex::new(Script { compiler_panics: true, ..Default::default() }));
    let host = Arc::new(MockHost { info: HostInfo { name: "mock", limits: Limits::default() }, script });
    let e = Driver::new(host, EXECUTOR.as_bytes(), DriverConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Compile { backend: "mock", .. }), "{e:?}");
    assert!(e.to_string().contains("the compiler panicked: scripted compiler panic"), "{e}");
}
