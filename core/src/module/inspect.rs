//! What a module uses and exports, for an operator (`peer check`): each
//! module limit used and allowed, the features beyond the MVP, the
//! exports. Nothing here decides whether a module loads; [`super::prepare`]
//! does.

use super::counts::check_counts;
use super::{abi_features, invalid, to_binary};
use crate::{Limits, Result};
use wasmparser::{Parser, WasmFeatures};

/// One module limit as a module uses it (`peer check`): the config key,
/// what the module uses, what is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimitUse {
    /// The limit's key in [`crate::ModuleLimits`].
    pub limit: &'static str,
    /// What the module uses (for per-function limits: its largest
    /// function).
    pub used: u64,
    /// What the limits allow.
    pub allowed: u64,
}

/// What a module is, for an operator (`peer check`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// Each module limit: what the module uses, what is allowed.
    pub limits: Vec<LimitUse>,
    /// The WebAssembly features beyond the MVP it uses.
    pub features: Vec<&'static str>,
    /// Its exports: name and kind (`func`, `memory`, `table`, `global`,
    /// `tag`).
    pub exports: Vec<(String, &'static str)>,
    /// Its writes to memory (stores and bulk operations): past
    /// [`crate::instrument::dirty::MAX_TRACKED_WRITES`] it loads without
    /// the write barrier.
    pub writes: u64,
}

/// Inspects `input` (binary or WAT), already accepted by
/// [`super::prepare`] under `limits`: its binary is made once, for all
/// three answers.
pub fn inspect(input: &[u8], limits: &Limits) -> Result<Inspection> {
    let wasm = to_binary(input, limits)?;
    let counts = check_counts(&wasm, &limits.module)?;
    Ok(Inspection {
        limits: limit_usage(&counts, &wasm, limits),
        features: features_used(&wasm),
        exports: exports_of(&wasm)?,
        writes: counts.writes,
    })
}

/// What `wasm`, of `c`, uses of each module limit.
fn limit_usage(c: &super::counts::Counts, wasm: &[u8], limits: &Limits) -> Vec<LimitUse> {
    let m = &limits.module;
    let row = |limit, used, allowed: u64| LimitUse { limit, used, allowed };
    vec![
        row("bytes", wasm.len() as u64, m.bytes),
        row("functions", c.functions, m.functions.into()),
        row("types", c.types, m.types.into()),
        row("globals", c.globals, m.globals.into()),
        row("exports", c.exports, m.exports.into()),
        row("segments", c.segments, m.segments.into()),
        row("tables", c.tables, m.tables.into()),
        row("locals_per_function", c.locals_per_function, m.locals_per_function.into()),
        row("locals", c.locals, m.locals),
        row("instructions_per_function", c.instructions_per_function, m.instructions_per_function.into()),
        row("instructions", c.instructions, m.instructions),
        row("nesting_depth", c.nesting_depth, m.nesting_depth.into()),
    ]
}

/// The WebAssembly features beyond the MVP that `wasm` uses, by name: each
/// optional feature of [`abi_features`] the module fails to validate
/// without.
fn features_used(wasm: &[u8]) -> Vec<&'static str> {
    let optional = [
        ("mutable-global", WasmFeatures::MUTABLE_GLOBAL),
        ("sign-extension", WasmFeatures::SIGN_EXTENSION),
        ("saturating-float-to-int", WasmFeatures::SATURATING_FLOAT_TO_INT),
        ("bulk-memory", WasmFeatures::BULK_MEMORY),
        ("multi-value", WasmFeatures::MULTI_VALUE),
        ("reference-types", WasmFeatures::REFERENCE_TYPES),
    ];
    optional
        .into_iter()
        .filter(|(_, feature)| {
            let without = abi_features().difference(*feature);
            wasmparser::Validator::new_with_features(without).validate_all(wasm).is_err()
        })
        .map(|(name, _)| name)
        .collect()
}

/// The exports of `wasm`: name and kind.
fn exports_of(wasm: &[u8]) -> Result<Vec<(String, &'static str)>> {
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ExportSection(s) = payload.map_err(invalid)? {
            for e in s {
                let e = e.map_err(invalid)?;
                let kind = match e.kind {
                    wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => "func",
                    wasmparser::ExternalKind::Memory => "memory",
                    wasmparser::ExternalKind::Table => "table",
                    wasmparser::ExternalKind::Global => "global",
                    wasmparser::ExternalKind::Tag => "tag",
                };
                exports.push((e.name.to_string(), kind));
            }
        }
    }
    Ok(exports)
}
