//! `module::prepare` without an engine: what the prepared module looks like.

use executor_core::module::{RESERVED_PREFIX, prepare};
use executor_core::{Error, Limits};
use wasmparser::{Parser, Payload};

const STATEFUL: &str = r#"(module
  (memory (export "memory") 1)
  (global $hidden (mut i32) (i32.const 1))
  (global $const i64 (i64.const 2))
  (global (export "visible") (mut f64) (f64.const 3))
  (table 2 funcref) (table 1 externref)
  (func (export "executor_init"))
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0))
  (@custom "junk" "bytes"))"#;

fn exports(wasm: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for p in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(s) = p.unwrap() {
            names.extend(s.into_iter().map(|e| e.unwrap().name.to_string()));
        }
    }
    names
}

#[test]
fn every_mutable_global_and_table_is_exported_for_blanking() {
    let m = prepare(STATEFUL.as_bytes(), &Limits::default()).unwrap();
    let names = exports(&m.wasm);
    let reserved: Vec<&String> = names.iter().filter(|n| n.starts_with(RESERVED_PREFIX)).collect();
    assert_eq!(
        reserved,
        [
            "__executor_host_global_0",
            "__executor_host_global_2",
            "__executor_host_table_0",
            "__executor_host_table_1",
            "__executor_host_books",
        ]
    );
    assert!(names.contains(&"visible".to_string()), "original exports are kept");
    assert_eq!(m.info.globals.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 2], "immutable globals need no restore");
    assert!(m.info.has_init && !m.info.has_migrate && m.info.start.is_none());
    assert_eq!(m.info.memory_initial_pages, 1);
    wasmparser::Validator::new().validate_all(&m.wasm).expect("the prepared module is valid");
    let custom = Parser::new(0).parse_all(&m.wasm).any(|p| matches!(p.unwrap(), Payload::CustomSection(_)));
    assert!(!custom, "custom sections are dropped");
}

#[test]
fn binary_and_text_give_the_same_hash() {
    let binary = wat::parse_str(STATEFUL).unwrap();
    let a = prepare(&binary, &Limits::default()).unwrap();
    let b = prepare(STATEFUL.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.wasm, b.wasm);
}

#[test]
fn the_default_executor_uses_only_abi_features() {
    let bytes = include_bytes!("../../executors/default.wasm");
    let m = prepare(bytes, &Limits::default()).unwrap();
    assert!(m.info.has_init);
    let mut imports = m.info.imports.clone();
    imports.sort();
    assert_eq!(imports, ["deny_reason", "log", "state_get"]);
}

#[test]
fn oversized_wat_is_refused_before_parsing() {
    let mut limits = Limits::default();
    limits.module.bytes = 10;
    assert!(matches!(prepare(STATEFUL.as_bytes(), &limits), Err(Error::ModuleLimit { .. })));
}

#[test]
fn the_guest_memory_stays_as_compiled_and_the_books_are_a_second_memory() {
    let wat = r#"(module
      (memory (export "memory") 2 5)
      (data (i32.const 100) "abc")
      (data "passive")
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#;
    let m = prepare(wat.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(m.info.layout.books, 2 * 65536, "64 MiB of guest memory: a 64 KiB map, its 1 KiB summary, the cells");
    let mut exported = false;
    for p in Parser::new(0).parse_all(&m.wasm) {
        match p.unwrap() {
            Payload::MemorySection(s) => {
                let mems: Vec<_> = s.into_iter().map(|m| m.unwrap()).map(|m| (m.initial, m.maximum)).collect();
                assert_eq!(mems, [(2, Some(5)), (2, Some(2))], "the guest's memory as declared; the books fixed");
            }
            Payload::DataSection(s) => {
                let segs: Vec<_> = s.into_iter().map(|d| d.unwrap()).collect();
                let wasmparser::DataKind::Active { offset_expr, memory_index } = &segs[0].kind else { panic!() };
                assert_eq!(*memory_index, 0);
                let op = offset_expr.get_operators_reader().read().unwrap();
                assert!(matches!(op, wasmparser::Operator::I32Const { value: 100 }), "not moved");
                assert!(matches!(segs[1].kind, wasmparser::DataKind::Passive));
            }
            Payload::ExportSection(s) => {
                exported = s.into_iter().map(|e| e.unwrap()).any(|e| {
                    e.name == executor_core::module::exports::BOOKS
                        && e.kind == wasmparser::ExternalKind::Memory
                        && e.index == 1
                });
            }
            _ => {}
        }
    }
    assert!(exported, "the books are exported for the host");
    let big = Limits { memory_bytes: 1 << 30, memory_cap: u64::MAX, ..Limits::default() };
    let books = prepare(wat.as_bytes(), &big).unwrap().info.layout.books;
    assert_eq!(books, 17 * 65536, "1 GiB: a 1 MiB map, its 16 KiB summary, the cells");
    let too_big = Limits { memory_bytes: 3 << 30, ..Limits::default() };
    assert!(matches!(prepare(wat.as_bytes(), &too_big), Err(Error::ModuleLimit { .. })));
}

/// Marks of the write barrier (and flag writes) in `executor_validate`
/// (the second function of the modules below): the stores to the books
/// (memory 1) at static offset 0 — the map, and flags at constant
/// addresses; the summary has the map's size as offset.
fn marks(wasm: &[u8]) -> usize {
    let mut n = 0;
    let bodies = Parser::new(0).parse_all(wasm).filter_map(|p| match p.unwrap() {
        Payload::CodeSectionEntry(body) => Some(body),
        _ => None,
    });
    if let Some(body) = bodies.into_iter().nth(1) {
        {
            for op in body.get_operators_reader().unwrap() {
                if let wasmparser::Operator::I32Store8 { memarg } | wasmparser::Operator::I32Store16 { memarg } =
                    op.unwrap()
                {
                    n += usize::from(memarg.memory == 1 && memarg.offset == 0);
                }
            }
        }
    }
    n
}

#[test]
fn stores_through_base_plus_constant_share_their_marks() {
    // A compiler's unrolled byte copy: eight stores at `base + k`.
    let copy = |address: &str| {
        let stores: String =
            (0..8).map(|k| format!("(i32.store8 {} (i32.const 1))\n", address.replace('K', &k.to_string()))).collect();
        format!(
            r#"(module (memory (export "memory") 1)
              (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "executor_validate") (param $p i32) (param $n i32) (result i32)
                {stores} (i32.const 0)))"#
        )
    };
    let grouped = prepare(copy("(i32.add (local.get $p) (i32.const K))").as_bytes(), &Limits::default()).unwrap();
    // The same addresses, not provably `base + k`: a mark per store.
    let each =
        prepare(copy("(i32.add (i32.mul (local.get $p) (i32.const 1)) (i32.const K))").as_bytes(), &Limits::default())
            .unwrap();
    // Grouped: one 2-byte mark of the lowest offset's page and the next.
    assert_eq!(marks(&each.wasm) - marks(&grouped.wasm), 8 - 1);
}

/// Reads of the dirty map (loads from the books at offset 0: a conditional
/// mark's test) inside and outside loops of `executor_validate`, the
/// second function of the modules below.
fn map_reads_in_and_out_of_loops(wasm: &[u8]) -> (usize, usize) {
    let (mut inside, mut outside) = (0, 0);
    let bodies = Parser::new(0).parse_all(wasm).filter_map(|p| match p.unwrap() {
        Payload::CodeSectionEntry(body) => Some(body),
        _ => None,
    });
    if let Some(body) = bodies.into_iter().nth(1) {
        {
            // Per open block: whether it is a loop.
            let mut open: Vec<bool> = Vec::new();
            for op in body.get_operators_reader().unwrap() {
                match op.unwrap() {
                    wasmparser::Operator::Loop { .. } => open.push(true),
                    wasmparser::Operator::Block { .. } | wasmparser::Operator::If { .. } => open.push(false),
                    wasmparser::Operator::End => {
                        open.pop();
                    }
                    wasmparser::Operator::I32Load8U { memarg } | wasmparser::Operator::I32Load16U { memarg }
                        if memarg.memory == 1 && memarg.offset == 0 =>
                    {
                        *if open.contains(&true) { &mut inside } else { &mut outside } += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    (inside, outside)
}

#[test]
fn a_copy_loop_is_marked_where_it_is_left_not_per_iteration() {
    // `*d = *s; d += 4; s += 4` until `d` reaches the end, as
    // compiler-builtins' `memcpy` does; `step` is how `d` advances.
    let copy = |step: &str| {
        format!(
            r#"(module (memory (export "memory") 1)
              (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "executor_validate") (param $s i32) (param $n i32) (result i32)
                (local $d i32) (local $end i32)
                (local.set $d (i32.const 4096))
                (local.set $end (i32.add (local.get $d) (local.get $n)))
                (loop $copy
                  (i32.store (local.get $d) (i32.load (local.get $s)))
                  (local.set $s (i32.add (local.get $s) (i32.const 4)))
                  (local.set $d {step})
                  (br_if $copy (i32.lt_u (local.get $d) (local.get $end))))
                (i32.const 0)))"#
        )
    };
    let stepped = prepare(copy("(i32.add (local.get $d) (i32.const 4))").as_bytes(), &Limits::default()).unwrap();
    let (inside, _) = map_reads_in_and_out_of_loops(&stepped.wasm);
    assert_eq!(inside, 0, "no mark in the loop");
    // The range mark after it: its one-page case inline, the rest by a
    // call of the appended helper.
    let calls = Parser::new(0)
        .parse_all(&stepped.wasm)
        .filter_map(|p| match p.unwrap() {
            Payload::CodeSectionEntry(body) => Some(body),
            _ => None,
        })
        .nth(1)
        .map(|body| {
            body.get_operators_reader()
                .unwrap()
                .into_iter()
                .filter(|op| matches!(op, Ok(wasmparser::Operator::Call { .. })))
                .count()
        });
    assert_eq!(calls, Some(1), "a range mark after it");
    // Not a constant step: the mark stays in the loop.
    let doubled = prepare(copy("(i32.shl (local.get $d) (i32.const 1))").as_bytes(), &Limits::default()).unwrap();
    assert_eq!(map_reads_in_and_out_of_loops(&doubled.wasm).0, 1, "a mark per iteration");
    // Steps need the fuel counter to bound them: without metering, none.
    let options = executor_core::module::Options {
        metering: executor_core::module::Metering::OffForBenchmarks,
        ..Default::default()
    };
    let unmetered = executor_core::module::prepare_with(
        copy("(i32.add (local.get $d) (i32.const 4))").as_bytes(),
        &Limits::default(),
        options,
    )
    .unwrap();
    assert_eq!(map_reads_in_and_out_of_loops(&unmetered.wasm).0, 1, "a mark per iteration");
}

/// The locals each function of `wasm` declares, in order.
fn declared_locals(wasm: &[u8]) -> Vec<Vec<wasmparser::ValType>> {
    let mut functions = Vec::new();
    for p in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = p.unwrap() {
            let mut types = Vec::new();
            for l in body.get_locals_reader().unwrap() {
                let (n, ty) = l.unwrap();
                types.extend(std::iter::repeat_n(ty, n as usize));
            }
            functions.push(types);
        }
    }
    functions
}

/// An interpreter zeroes every declared local on each call, so a function
/// declares only the temporaries up to the last it uses: the fuel counter
/// first (every metered function), the stack budget next (a function that
/// calls), the store temporaries after them, the float ones last.
#[test]
fn a_function_declares_only_the_temporaries_it_uses() {
    use wasmparser::ValType::{F64, I32, I64};
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func $caller (param i32) (call $store (local.get 0)))
      (func $store (param i32) (i32.store (i32.const 64) (local.get 0)))
      (func $nan (param f64) (result f64) (f64.add (local.get 0) (local.get 0)))
      (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))"#;
    let m = prepare(wat.as_bytes(), &Limits::default()).unwrap();
    let locals = declared_locals(&m.wasm);
    assert_eq!(locals[1], [I64], "a leaf: the fuel counter only");
    assert_eq!(locals[2], [I64, I32], "a caller: and the stack budget at its entry");
    assert_eq!(&locals[3][..3], [I64, I32, I32], "a store: and the address, …");
    assert!(locals[3].len() < 10, "… but not every temporary: {:?}", locals[3]);
    assert_eq!(locals[4].len(), 10, "a NaN-producing f64 operation uses the last: {:?}", locals[4]);
    assert_eq!(locals[4].last(), Some(&F64));
    wasmparser::Validator::new_with_features(executor_core::module::instrumented_features())
        .validate_all(&m.wasm)
        .expect("the prepared module is valid");
}

/// The functions each function of `wasm` calls directly, in order.
fn direct_callees(wasm: &[u8]) -> Vec<Vec<u32>> {
    let mut functions = Vec::new();
    for p in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = p.unwrap() {
            let ops = body.get_operators_reader().unwrap().into_iter();
            let calls = ops.filter_map(|op| match op.unwrap() {
                wasmparser::Operator::Call { function_index } => Some(function_index),
                _ => None,
            });
            functions.push(calls.collect());
        }
    }
    functions
}

/// A small leaf that only computes is inlined at its call sites, and so is
/// one that stores through a parameter where the caller passes a local
/// (the caller marks its stores); a leaf storing elsewhere, one whose
/// pointer is no local's value, a function that calls, a large leaf, and
/// any function called from a caller with too many locals stay calls.
#[test]
fn only_small_computing_leaves_are_inlined() {
    let nops = "(nop) ".repeat(70);
    let many = "i32 ".repeat(1000);
    let wat = format!(
        r#"(module
      (memory (export "memory") 1)
      (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
      (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func $stores (param i32) (i32.store (i32.const 64) (local.get 0)))
      (func $calls (param i32) (result i32) (call $leaf (local.get 0)))
      (func $large (param i32) (result i32) (local.get 0) {nops})
      (func $crowded (param i32) (result i32) (local {many}) (call $leaf (local.get 0)))
      (func $put (param i32) (i32.store offset=8 (local.get 0) (i32.const 1)))
      (func (export "executor_validate") (param i32 i32) (result i32)
        (call $stores (call $leaf (local.get 0)))
        (drop (call $calls (call $large (call $crowded (i32.const 0)))))
        (call $put (local.get 1))
        (call $put (i32.const 64))
        (i32.const 0)))"#
    );
    let m = prepare(wat.as_bytes(), &Limits::default()).unwrap();
    let calls = direct_callees(&m.wasm);
    let (leaf, stores, calls_leaf, large, crowded, put) = (1, 2, 3, 4, 5, 6);
    assert!(calls[calls_leaf as usize].is_empty(), "a caller of the leaf inlines it: {:?}", calls[3]);
    assert_eq!(calls[crowded as usize], [leaf], "a caller with 1,001 locals does not");
    assert_eq!(calls[7], [stores, crowded, large, calls_leaf, put], "only the leaf and one `put` are inlined");
    wasmparser::Validator::new_with_features(executor_core::module::instrumented_features())
        .validate_all(&m.wasm)
        .expect("the prepared module is valid");
}
