//! Differential fuzzing: random executors from `wasm-smith`, restricted to
//! abi.md's feature set and given the ABI's exports and imports, run on
//! every backend under the same limits; any difference in load outcome,
//! verdict, trap code, fuel-exhaustion point or deny reason is
//! "inconsistent output".
//!
//! `executor_alloc`'s generated body would mostly return a pointer outside
//! memory (ending every transaction as `host_fault` before
//! `executor_validate` runs), so [`executor`] replaces it with one that
//! returns a fixed in-bounds pointer.

use crate::HostFactory;
use crate::determinism::Backends;
use executor_core::{BlankMethod, Driver, DriverConfig, Limits, PersistencePolicy, Rejection, Verdict};
use std::collections::BTreeMap;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{Parser, Payload};

/// Where the fuzz executors' `executor_alloc` puts transactions.
pub const ALLOC_PTR: i32 = 1024;

const EXPORTS: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "executor_alloc") (param i32) (result i32) unreachable)
  (func (export "executor_validate") (param i32 i32) (result i32) unreachable))"#;

const IMPORTS: &str = r#"(module
  (import "host" "state_get" (func (param i32 i32 i32 i32) (result i32)))
  (import "host" "deny_reason" (func (param i32 i32)))
  (import "host" "log" (func (param i32 i32 i32))))"#;

/// The `wasm-smith` configuration: abi.md's features only (no SIMD,
/// threads, tail calls, exceptions, GC, memory64, multi-memory,
/// extended-const), sizes within the default limits.
pub fn config() -> wasm_smith::Config {
    wasm_smith::Config {
        exports: Some(wat::parse_str(EXPORTS).expect("valid WAT")),
        available_imports: Some(wat::parse_str(IMPORTS).expect("valid WAT")),
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        tail_call_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        extended_const_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        // The exported memory is generated anyway; no other.
        max_memories: 0,
        max_memory32_bytes: 16 << 20,
        max_tables: 3,
        max_table_elements: 1_000,
        max_funcs: 30,
        max_instructions: 300,
        max_data_segments: 10,
        max_element_segments: 10,
        ..wasm_smith::Config::default()
    }
}

/// SplitMix64, so a seed names a module on every machine.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n.div_ceil(8))
        .flat_map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .take(n)
        .collect()
}

/// The executor for `seed`: a `wasm-smith` module with `executor_alloc`'s
/// body replaced by `i32.const ALLOC_PTR`.
pub fn executor(seed: u64) -> Vec<u8> {
    executor_with(seed, config())
}

/// [`executor`] generated under `config` (e.g. [`config`] without floats,
/// for comparisons with an engine that does not canonicalise NaNs).
pub fn executor_with(seed: u64, config: wasm_smith::Config) -> Vec<u8> {
    let data = bytes(seed, 16 << 10);
    let mut u = arbitrary::Unstructured::new(&data);
    let module = wasm_smith::Module::new(config, &mut u).expect("wasm-smith builds a module from any bytes");
    replace_alloc(&module.to_bytes())
}

/// The payloads each fuzz executor validates.
pub fn payloads() -> Vec<Vec<u8>> {
    vec![vec![], vec![0], vec![1, 2, 3, 4], bytes(7, 40)]
}

/// The limits the fuzz executors run under.
pub fn limits() -> Limits {
    Limits { fuel: 100_000, init_fuel: 1_000_000, ..Limits::default() }
}

fn replace_alloc(wasm: &[u8]) -> Vec<u8> {
    let mut imported = 0u32;
    let mut alloc = None;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("wasm-smith output parses") {
            Payload::ImportSection(s) => {
                for i in s.into_imports() {
                    if matches!(i.expect("import").ty, wasmparser::TypeRef::Func(_)) {
                        imported += 1;
                    }
                }
            }
            Payload::ExportSection(s) => {
                for e in s {
                    let e = e.expect("export");
                    if e.name == "executor_alloc" {
                        alloc = Some(e.index);
                    }
                }
            }
            _ => {}
        }
    }
    let target = alloc.expect("executor_alloc exported") - imported;
    let mut out = wasm_encoder::Module::new();
    let mut code = wasm_encoder::CodeSection::new();
    let (mut index, mut remaining) = (0u32, 0u32);
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.expect("parses");
        match &payload {
            Payload::CodeSectionStart { count, .. } => {
                remaining = *count;
                if remaining == 0 {
                    out.section(&code);
                }
            }
            Payload::CodeSectionEntry(body) => {
                if index == target {
                    let mut f = wasm_encoder::Function::new([]);
                    f.instruction(&wasm_encoder::Instruction::I32Const(ALLOC_PTR));
                    f.instruction(&wasm_encoder::Instruction::End);
                    code.function(&f);
                } else {
                    RoundtripReencoder.parse_function_body(&mut code, body.clone()).expect("body re-encodes");
                }
                index += 1;
                remaining -= 1;
                if remaining == 0 {
                    out.section(&code);
                }
            }
            _ => {
                if let Some((id, range)) = payload.as_section() {
                    out.section(&wasm_encoder::RawSection { id, data: &wasm[range] });
                }
            }
        }
    }
    out.finish()
}

/// How one executor fared on one backend: its load error, or its verdicts.
pub type Outcome = Result<Vec<Verdict>, String>;

/// Runs `executor` on `factory` over `payloads` under `limits`, blanking
/// by `blank` (under `until-crash`, so only recycles blank).
pub fn outcome(
    factory: HostFactory,
    executor: &[u8],
    limits: &Limits,
    payloads: &[Vec<u8>],
    blank: BlankMethod,
) -> Outcome {
    let config = DriverConfig { policy: PersistencePolicy::UntilCrash, blank, ..Default::default() };
    let mut d = Driver::new(factory(limits.clone()), executor, config).map_err(|e| e.to_string())?;
    let state = crate::state(&[(b"k", b"value")]);
    let verdicts = payloads.iter().map(|p| d.validate(p, state.clone()).map_err(|e| e.to_string())).collect();
    assert_eq!(d.stats().backstops, 0, "an engine limit fired before core's");
    verdicts
}

/// What a slice of seeds produced, for the record.
#[derive(Debug, Default)]
pub struct Summary {
    /// Executors that loaded.
    pub loaded: u64,
    /// Load errors, by their first words.
    pub load_errors: BTreeMap<String, u64>,
    /// Verdicts by kind (`approved`, `denied`, a rejection).
    pub verdicts: BTreeMap<String, u64>,
}

/// Runs seeds `seeds` on every backend, with the write barrier and
/// without it (each instrumentation of the executor), requiring identical
/// outcomes.
pub fn slice(backends: Backends<'_>, seeds: std::ops::Range<u64>) -> Summary {
    let (limits, payloads) = (limits(), payloads());
    let mut summary = Summary::default();
    for seed in seeds {
        let exec = executor(seed);
        let mut first: Option<(String, Outcome)> = None;
        for (name, factory) in backends {
            for blank in [BlankMethod::Restore, BlankMethod::Rebuild] {
                let got = outcome(*factory, &exec, &limits, &payloads, blank);
                match &first {
                    None => first = Some((format!("{name} ({blank})"), got)),
                    Some((base, expected)) => {
                        assert_eq!(
                            expected, &got,
                            "inconsistent output for wasm-smith seed {seed}: {base} (left) vs {name} ({blank}) (right)"
                        );
                    }
                }
            }
        }
        match first.map(|(_, o)| o) {
            Some(Ok(verdicts)) => {
                summary.loaded += 1;
                for v in verdicts {
                    let key = match v {
                        Verdict::Approved => "approved".to_string(),
                        Verdict::Denied { .. } => "denied".to_string(),
                        Verdict::Rejected { rejection: Rejection::Trap(code) } => format!("trap:{code}"),
                        Verdict::Rejected { rejection } => rejection.to_string(),
                    };
                    *summary.verdicts.entry(key).or_default() += 1;
                }
            }
            Some(Err(e)) => {
                let key = e.split(':').next().unwrap_or("").to_string();
                *summary.load_errors.entry(key).or_default() += 1;
            }
            None => {}
        }
    }
    summary
}
