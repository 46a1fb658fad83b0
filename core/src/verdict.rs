//! Verdicts and rejection kinds exactly as abi.md names them, and the digest
//! over a verdict sequence that `peer` reports as `verdict_digest`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strum::{Display, EnumIter, EnumString, IntoStaticStr};

/// The outcome of validating one transaction. Guest failures are verdicts;
/// host failures are never verdicts (they are [`crate::Error`]s). Exactly
/// these three (abi.md): exhaustive on purpose, unlike the rejection kinds,
/// to which the ABI may add.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// `executor_validate` returned 0.
    Approved,
    /// `executor_validate` returned 1; the reason is the last
    /// `host.deny_reason` of the transaction (possibly empty).
    Denied {
        /// At most 256 bytes of the guest's text, lossily decoded.
        reason: String,
    },
    /// The transaction did not reach a verdict of the executor's own.
    Rejected {
        /// Why.
        #[serde(flatten)]
        rejection: Rejection,
    },
}

impl Verdict {
    /// A rejection verdict.
    pub fn rejected(rejection: Rejection) -> Self {
        Verdict::Rejected { rejection }
    }

    /// The rejection, if this verdict is one.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Verdict::Rejected { rejection } => Some(*rejection),
            _ => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Approved => f.write_str("approved"),
            Verdict::Denied { reason } => write!(f, "denied({reason:?})"),
            Verdict::Rejected { rejection } => write!(f, "rejected({rejection})"),
        }
    }
}

/// Why a transaction was rejected: abi.md's kinds, with the trap code for
/// `trap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
#[non_exhaustive]
pub enum Rejection {
    /// Past its fuel budget.
    OutOfFuel,
    /// Linear memory or a table tried to grow past the configured limit.
    OutOfMemory,
    /// Past the stack budget.
    StackOverflow,
    /// A WebAssembly trap.
    Trap(TrapCode),
    /// A host import was called with bad arguments, or `executor_alloc`
    /// misbehaved.
    HostFault,
    /// `executor_validate` returned something other than 0 or 1.
    BadVerdict,
    /// An approved upgrade whose new executor could not be loaded,
    /// initialised or migrated.
    UpgradeFailed,
}

impl Rejection {
    /// The kind without the trap code.
    pub fn kind(self) -> RejectionKind {
        match self {
            Rejection::OutOfFuel => RejectionKind::OutOfFuel,
            Rejection::OutOfMemory => RejectionKind::OutOfMemory,
            Rejection::StackOverflow => RejectionKind::StackOverflow,
            Rejection::Trap(_) => RejectionKind::Trap,
            Rejection::HostFault => RejectionKind::HostFault,
            Rejection::BadVerdict => RejectionKind::BadVerdict,
            Rejection::UpgradeFailed => RejectionKind::UpgradeFailed,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Trap(code) => write!(f, "trap:{code}"),
            other => f.write_str(other.kind().into()),
        }
    }
}

/// The rejection kinds, spelled as in abi.md and `peer run --json`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Display,
    EnumString,
    EnumIter,
    IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum RejectionKind {
    /// See [`Rejection::OutOfFuel`].
    OutOfFuel,
    /// See [`Rejection::OutOfMemory`].
    OutOfMemory,
    /// See [`Rejection::StackOverflow`].
    StackOverflow,
    /// See [`Rejection::Trap`].
    Trap,
    /// See [`Rejection::HostFault`].
    HostFault,
    /// See [`Rejection::BadVerdict`].
    BadVerdict,
    /// See [`Rejection::UpgradeFailed`].
    UpgradeFailed,
}

/// The trap codes of abi.md. Backends translate their engine's traps into
/// these (see [`crate::Trap`]); a trap an engine cannot name is a host
/// failure, never a guessed code.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Display,
    EnumString,
    EnumIter,
    IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum TrapCode {
    /// `unreachable` executed.
    Unreachable,
    /// A load, store or bulk-memory access outside linear memory.
    MemoryOutOfBounds,
    /// A table access outside the table.
    TableOutOfBounds,
    /// `call_indirect` through a null entry.
    IndirectCallToNull,
    /// `call_indirect` with a mismatched signature.
    BadSignature,
    /// Signed division overflow (`i32.div_s` of `MIN` by -1, …).
    IntegerOverflow,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// A trapping float-to-int conversion of NaN or an out-of-range value.
    BadConversionToInteger,
}

/// Feeds verdicts, in order, into a SHA-256 whose hex is `verdict_digest`.
///
/// Each verdict is framed unambiguously (a tag byte, then a length-prefixed
/// reason or code), so equal digests mean equal sequences whatever the
/// backend.
#[derive(Clone, Default)]
pub struct VerdictDigest {
    hasher: Sha256,
    count: u64,
}

impl VerdictDigest {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one verdict.
    pub fn push(&mut self, verdict: &Verdict) {
        self.count += 1;
        let (tag, detail): (u8, &[u8]) = match verdict {
            Verdict::Approved => (0, b""),
            Verdict::Denied { reason } => (1, reason.as_bytes()),
            Verdict::Rejected { rejection: Rejection::Trap(code) } => (2, <&'static str>::from(*code).as_bytes()),
            Verdict::Rejected { rejection } => (3, <&'static str>::from(rejection.kind()).as_bytes()),
        };
        self.hasher.update([tag]);
        self.hasher.update((detail.len() as u64).to_le_bytes());
        self.hasher.update(detail);
    }

    /// How many verdicts were pushed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hex digest of the sequence so far.
    pub fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn names_match_the_abi() {
        assert_eq!(RejectionKind::OutOfFuel.to_string(), "out_of_fuel");
        assert_eq!(RejectionKind::from_str("upgrade_failed").unwrap(), RejectionKind::UpgradeFailed);
        assert_eq!(TrapCode::BadConversionToInteger.to_string(), "bad_conversion_to_integer");
        assert_eq!(TrapCode::IndirectCallToNull.to_string(), "indirect_call_to_null");
        let v = Verdict::rejected(Rejection::Trap(TrapCode::IntegerDivisionByZero));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"verdict":"rejected","kind":"trap","code":"integer_division_by_zero"}"#
        );
        assert_eq!(v.to_string(), "rejected(trap:integer_division_by_zero)");
        let d = Verdict::Denied { reason: "no".into() };
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"verdict":"denied","reason":"no"}"#);
        let back: Verdict = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn digest_tells_sequences_apart() {
        let seq = |vs: &[Verdict]| {
            let mut d = VerdictDigest::new();
            vs.iter().for_each(|v| d.push(v));
            d.hex()
        };
        let a = Verdict::Approved;
        let dn = |r: &str| Verdict::Denied { reason: r.into() };
        assert_eq!(seq(&[a.clone(), dn("x")]), seq(&[a.clone(), dn("x")]));
        assert_ne!(seq(&[a.clone(), dn("x")]), seq(&[dn("x"), a.clone()]));
        assert_ne!(seq(&[dn("ab"), dn("")]), seq(&[dn("a"), dn("b")]));
        assert_ne!(
            seq(&[Verdict::rejected(Rejection::Trap(TrapCode::Unreachable))]),
            seq(&[Verdict::rejected(Rejection::Trap(TrapCode::IntegerOverflow))])
        );
        assert_ne!(seq(&[]), seq(&[a]));
    }
}
