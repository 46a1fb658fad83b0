//! The worst case of each module limit for the engines' compilers: a
//! module exactly at the limit, built to make loading it as costly as the
//! limit allows. Loading any of them must stay within the load budget on
//! every backend (README, *Load budget*): `peer`'s `bench-load` measures
//! time and peak memory per backend, each in a process of its own, and a
//! test checks them against generous bounds.

use executor_core::ModuleLimits;
use std::fmt::Write;

/// A module at one limit.
#[derive(Debug, Clone)]
pub struct WorstCase {
    /// The case.
    pub name: &'static str,
    /// The limit, as [`executor_core::Error::ModuleLimit`] names it.
    pub limit: &'static str,
    /// The value it is at.
    pub value: u64,
    /// The module (binary).
    pub wasm: Vec<u8>,
}

/// The ABI's memory and two exports; every case adds to it.
const ABI: &str = r#"(memory (export "memory") 1)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))"#;

/// Functions, types and parameters the ABI part defines.
const ABI_FUNCTIONS: u64 = 2;
const ABI_TYPES: u64 = 2;
const ABI_PARAMS: u64 = 3;
const ABI_EXPORTS: u64 = 3;

fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {ABI}\n{body})")).expect("generated WAT parses")
}

/// Instructions the ABI part's functions have.
const ABI_INSTRUCTIONS: u64 = 4;

/// A function `(param i32)` of exactly `k` ≥ 1 instructions — stores to
/// a loaded address (four instructions each: each needs a mark of its
/// own, where constant addresses share one per run), at most `stores` of
/// them, then loads from a loaded address (four each, dropped), `nop`s for
/// the rest, and the `end` — as WAT. Returns the stores it wrote.
fn function(out: &mut String, k: u64, stores: u64) -> u64 {
    out.push_str("(func (param i32)");
    let body = k - 1;
    let stores = stores.min(body / 4);
    for _ in 0..stores {
        out.push_str(" (i32.store (i32.load (i32.const 0)) (i32.const 0))");
    }
    for _ in stores..body / 4 {
        out.push_str(" (drop (i32.load (i32.load (i32.const 0))))");
    }
    for _ in 0..body % 4 {
        out.push_str(" (nop)");
    }
    out.push_str(")\n");
    stores
}

/// Functions of `total` instructions together, at most `each` per
/// function, with `stores` stores among them, spread evenly.
fn functions_of(out: &mut String, total: u64, each: u64, stores: u64) {
    let (mut left, mut stores_left) = (total, stores);
    while left > 0 {
        let k = left.min(each);
        let functions_left = left.div_ceil(each);
        stores_left -= function(out, k, stores_left.div_ceil(functions_left));
        left -= k;
    }
}

/// The value types, for distinct signatures.
const VALTYPES: [&str; 4] = ["i32", "i64", "f32", "f64"];

/// The worst case of each limit of `m` that loading cost depends on.
pub fn worst_cases(m: &ModuleLimits) -> Vec<WorstCase> {
    let mut cases = Vec::new();
    let mut case = |name, limit, value, wasm| cases.push(WorstCase { name, limit, value, wasm });

    let mut body = String::new();
    for _ in 0..u64::from(m.functions) - ABI_FUNCTIONS {
        body.push_str("(func (result i32) (i32.const 0))\n");
    }
    case("functions", "functions", m.functions.into(), module(&body));

    // Distinct signatures: the k-th in bijective base 4 over the value
    // types, so every one differs.
    let mut body = String::new();
    for k in 0..u64::from(m.types) - ABI_TYPES {
        let (mut k, mut params) = (k, String::new());
        while k > 0 {
            k -= 1;
            params.push(' ');
            params.push_str(VALTYPES[(k % 4) as usize]);
            k /= 4;
        }
        let _ = writeln!(body, "(type (func (param{params})))");
    }
    case("types", "types", m.types.into(), module(&body));

    // Nested if/else: the shape that made one compiler quadratic.
    let depth = u64::from(m.nesting_depth);
    let mut body = String::from("(func (param i32)");
    // The function's own block is the first level.
    for _ in 1..depth {
        body.push_str(" (if (local.get 0) (then");
    }
    body.push_str(" (nop)");
    for _ in 1..depth {
        body.push_str(") (else (nop)))");
    }
    body.push(')');
    case("nesting", "control nesting depth", depth, module(&body));

    let per_function = u64::from(m.instructions_per_function);
    let mut body = String::new();
    function(&mut body, per_function, u64::MAX);
    case("one big function", "instructions per function", per_function, module(&body));

    // The module's instructions in functions at the per-function limit,
    // and spread over every function it may have.
    // Small loops, each storing through a base it steps: each gets a
    // range mark on its way out (`hoist`'s budget bounds how many).
    let mut body = String::from("(func (param i32)");
    let unit = " (loop (i32.store (local.get 0) (i32.const 0)) \
                (local.set 0 (i32.add (local.get 0) (i32.const 4))) (br_if 0 (local.get 0)))";
    let (loops, rest) = ((per_function - 1) / 11, (per_function - 1) % 11);
    body.push_str(&unit.repeat(loops as usize));
    body.push_str(&" (nop)".repeat(rest as usize));
    body.push_str(")\n");
    case("loops in one big function", "instructions per function", per_function, module(&body));

    let total = m.instructions - ABI_INSTRUCTIONS;
    let mut body = String::new();
    functions_of(&mut body, total, per_function, u64::MAX);
    case("instructions in big functions", "instructions", m.instructions, module(&body));
    let defined = u64::from(m.functions) - ABI_FUNCTIONS;
    let each = total.div_ceil(defined).max(1);
    let mut body = String::new();
    functions_of(&mut body, total, each, u64::MAX);
    case("instructions in every function", "instructions", m.instructions, module(&body));
    // Past the barrier's budget a module loads without marks (cheaper to
    // compile); at it, every write is marked.
    let mut body = String::new();
    functions_of(&mut body, total, each, executor_core::instrument::dirty::MAX_TRACKED_WRITES);
    case("writes at the barrier's budget", "instructions", m.instructions, module(&body));

    // Calls of a leaf as large as the instrumentation inlines, as many as
    // the module's instructions allow, in callers that each inline as
    // many as they may.
    let inline_ops = executor_core::instrument::inline::MAX_OPS as u64;
    let mut body = String::from("(func $leaf (param i32) (result i32) (local.get 0)");
    body.push_str(&" (i32.load) (i32.const 1) (i32.add)".repeat(((inline_ops - 2) / 3) as usize));
    body.push_str(")\n");
    let mut left = total - (inline_ops - 2) / 3 * 3 - 2;
    let site = " (drop (call $leaf (local.get 0)))";
    let sites = (executor_core::instrument::inline::MAX_ADDED_OPS as u64 / inline_ops).min(per_function / 3);
    while left >= 4 {
        let n = sites.min((left - 1) / 3);
        let _ = writeln!(body, "(func (param i32){})", site.repeat(n as usize));
        left -= 3 * n + 1;
    }
    case("inlined calls", "instructions", m.instructions, module(&body));

    // Locals: functions at the per-function limit (a parameter and the
    // rest declared), as far as the module's total allows.
    let per = u64::from(m.locals_per_function);
    let mut body = String::new();
    let mut left = m.locals - ABI_PARAMS;
    while left > 0 {
        let n = left.min(per);
        let _ = writeln!(body, "(func (param i32) (local {}))", "i32 ".repeat(n as usize - 1));
        left -= n;
    }
    case("locals", "locals", m.locals, module(&body));

    // The other counts: each at its limit.
    let mut body = String::new();
    for i in 0..m.segments {
        let _ = writeln!(body, "(data (i32.const {}) \"x\")", i % 65_536);
    }
    case("data segments", "data segments", m.segments.into(), module(&body));
    let mut body = String::from("(table 10000 funcref)\n");
    for i in 0..m.segments {
        let _ = writeln!(body, "(elem (i32.const {}) func 0)", i % 10_000);
    }
    case("element segments", "element segments", m.segments.into(), module(&body));
    let mut body = String::new();
    for _ in 0..m.globals {
        body.push_str("(global (mut i64) (i64.const 0))\n");
    }
    case("globals", "globals", m.globals.into(), module(&body));
    let mut body = String::new();
    for i in 0..u64::from(m.exports) - ABI_EXPORTS {
        let _ = writeln!(body, "(export \"e{i}\" (func 0))");
    }
    case("exports", "exports", m.exports.into(), module(&body));
    let targets = executor_core::module::engine_limits::BR_TABLE_TARGETS;
    let body = format!("(func (param i32) (block (br_table {} (local.get 0))))", "0 ".repeat(targets as usize + 1));
    case("br_table targets", "br_table targets", targets, module(&body));
    cases
}
