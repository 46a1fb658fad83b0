//! The first pass over a function body: its operators, validated; its
//! deepest operand stack (for the frame's cost); and its fuel *segments* —
//! straight runs of instructions, each charged once when it is entered.
//!
//! A segment ends at a control instruction (`loop`, `if`, `else`, `end`,
//! `br`, `br_if`, `br_table`, `return`, `unreachable`), but not at the
//! `end` of a loop or of a block no branch targets: only falling through
//! continues there, so the code after it joins the segment before — exact,
//! and fewer charges.

use super::{cost, err};
use crate::Result;
use wasmparser::{FuncValidator, FunctionBody, ModuleArity, Operator, WasmModuleResources};

/// What the first pass learned of one body.
pub(super) struct Analysis<'a> {
    /// The operators, in order.
    pub ops: Vec<Operator<'a>>,
    /// Whether a new segment starts after each operator.
    pub boundaries: Vec<bool>,
    /// Each segment's cost, in order (the first starts at the body's
    /// entry).
    pub segments: Vec<u64>,
    /// The deepest operand stack, as the validator measures it.
    pub max_stack: u32,
    /// Each operator's operands and results (for tracking what is on the
    /// operand stack; `(0, 0)` where the validator cannot say).
    pub arity: Vec<(u32, u32)>,
    /// The operand stack's height after each operator.
    pub heights: Vec<u32>,
    /// Whether the body calls a wasm function (directly or through a
    /// table): a function that does not is a *leaf*.
    pub calls: bool,
}

/// An open control frame, as the segment analysis sees it.
enum Frame {
    /// A `block`, and whether a branch targets its label.
    Block { targeted: bool },
    /// A `loop` (branches go to its start).
    Loop,
    /// An `if` (its `end` is reached from two paths).
    If,
}

/// Whether an operator ends a segment (before the refinement for block
/// and loop ends).
pub(super) fn ends_segment(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
    )
}

/// Whether an operator is a bulk memory, growth, table or segment
/// operation: each is charged by size, marks or flags of its own, or
/// drops what a blank cannot revive.
pub(super) fn bulk_or_table(op: &Operator<'_>) -> bool {
    use Operator as O;
    matches!(
        op,
        O::MemoryGrow { .. }
            | O::MemoryFill { .. }
            | O::MemoryCopy { .. }
            | O::MemoryInit { .. }
            | O::DataDrop { .. }
            | O::ElemDrop { .. }
            | O::TableGet { .. }
            | O::TableSet { .. }
            | O::TableGrow { .. }
            | O::TableSize { .. }
            | O::TableFill { .. }
            | O::TableCopy { .. }
            | O::TableInit { .. }
    )
}

/// Whether the code right after an operator is unreachable (so charging it
/// would be wasted code).
pub(super) fn leaves(op: &Operator<'_>) -> bool {
    matches!(op, Operator::Br { .. } | Operator::BrTable { .. } | Operator::Return | Operator::Unreachable)
}

/// Reads and validates `body`'s operators (its locals already defined in
/// `fv`) and finds its segments.
pub(super) fn analyse<'a, T: WasmModuleResources>(
    body: &FunctionBody<'a>,
    fv: &mut FuncValidator<T>,
    imported_funcs: u32,
) -> Result<Analysis<'a>>
where
    FuncValidator<T>: ModuleArity,
{
    let mut ops = Vec::new();
    let mut max_stack = 0u32;
    let mut segments = vec![0u64];
    let mut boundaries = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let (mut arity, mut heights, mut calls) = (Vec::new(), Vec::new(), false);
    let mut reader = body.get_operators_reader().map_err(err)?;
    while !reader.eof() {
        let offset = reader.original_position();
        let op = reader.read().map_err(err)?;
        arity.push(op.operator_arity(&*fv).unwrap_or((0, 0)));
        fv.op(offset, &op).map_err(err)?;
        heights.push(fv.operand_stack_height());
        calls |= match op {
            Operator::Call { function_index } => function_index >= imported_funcs,
            Operator::CallIndirect { .. } => true,
            _ => false,
        };
        max_stack = max_stack.max(fv.operand_stack_height());
        *segments.last_mut().expect("never empty") += cost::INSTRUCTION;
        let mut target = |depth: u32| {
            if let Some(Frame::Block { targeted }) =
                frames.len().checked_sub(1 + depth as usize).map(|i| &mut frames[i])
            {
                *targeted = true;
            }
        };
        let boundary = match &op {
            Operator::Block { .. } => {
                frames.push(Frame::Block { targeted: false });
                false
            }
            Operator::Loop { .. } => {
                frames.push(Frame::Loop);
                true
            }
            Operator::If { .. } => {
                frames.push(Frame::If);
                true
            }
            Operator::End => !matches!(frames.pop(), Some(Frame::Loop | Frame::Block { targeted: false })),
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                target(*relative_depth);
                true
            }
            Operator::BrTable { targets } => {
                for t in targets.targets() {
                    target(t.map_err(err)?);
                }
                target(targets.default());
                true
            }
            op => ends_segment(op),
        };
        if boundary {
            segments.push(0);
        }
        boundaries.push(boundary);
        ops.push(op);
    }
    Ok(Analysis { ops, boundaries, segments, max_stack, arity, heights, calls })
}
