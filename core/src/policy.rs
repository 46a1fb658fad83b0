//! The persistence policy — when a warm instance is blanked — and its
//! [`Schedule`], the counters that apply it. The [`crate::Driver`] keeps
//! one schedule and asks it before every transaction.

use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use strum::{Display, EnumString, IntoStaticStr};

/// When the [`crate::Driver`] blanks the warm instance (restores the exact
/// post-init state). Recycles (after a rejection, past the watermark, on
/// purge, …) happen whatever the policy and restart its count.
///
/// CLI spelling: `every-tx:N`, `every-block:N`, `until-crash`, `fresh`.
/// Config spelling: `{"every_transactions": N}`, `{"every_blocks": N}`,
/// `"until_crash"`, `"fresh"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PersistencePolicy {
    /// Blank after the instance has served `n` transactions.
    ///
    /// Cost: one blank per `n` transactions; a blank costs what the backend's
    /// restore costs (what the transactions dirtied, on the good backends),
    /// not a re-instantiation and never a re-run of `executor_init`.
    /// `n = 1` (the default) is the safe setting: no transaction can see
    /// another's leftovers.
    EveryTransactions(NonZeroU32),
    /// Blank at the start of a block once `n` blocks ended since the last
    /// blank.
    ///
    /// Cost: one blank per `n` blocks. Transactions of the same block can
    /// see each other's leftovers.
    EveryBlocks(NonZeroU32),
    /// Never blank on schedule; only recycles restore the blank state.
    ///
    /// Cost: none beyond recycles. Leftovers can reach any later
    /// transaction until a recycle; use audit mode to find out whether the
    /// executor is safe to keep warm.
    UntilCrash,
    /// The reference a host without this project gives: for every
    /// transaction a new store and instance from the once-compiled module
    /// with the engine's default settings (no pooling, no pre-instantiation,
    /// no snapshot), then `executor_init`.
    ///
    /// Cost: a full instantiation and `executor_init` per transaction.
    Fresh,
}

impl Default for PersistencePolicy {
    fn default() -> Self {
        PersistencePolicy::EveryTransactions(NonZeroU32::MIN)
    }
}

/// Where a [`PersistencePolicy`] stands: what the instance served since it
/// was last blank, and whether the next transaction needs a blank first.
/// abi.md: every n transactions counts transactions since the last blank;
/// every n blocks counts blocks ended since then; `fresh` blanks before
/// every transaction but the first; a recycle leaves a blank instance, so
/// it [restarts](Schedule::restart) the count like a blank.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: PersistencePolicy,
    /// Transactions served since the instance was last blank.
    served: u64,
    /// Blocks ended since the instance was last blank.
    blocks_ended: u64,
    /// Whether any transaction was ever served.
    started: bool,
}

impl Schedule {
    /// A schedule for `policy`, on a blank instance.
    pub fn new(policy: PersistencePolicy) -> Self {
        Schedule { policy, served: 0, blocks_ended: 0, started: false }
    }

    /// The policy applied.
    pub fn policy(&self) -> PersistencePolicy {
        self.policy
    }

    /// Whether the policy wants a blank before the next transaction.
    pub fn due(&self) -> bool {
        match self.policy {
            PersistencePolicy::EveryTransactions(n) => self.served >= u64::from(n.get()),
            PersistencePolicy::EveryBlocks(n) => self.blocks_ended >= u64::from(n.get()),
            PersistencePolicy::UntilCrash => false,
            PersistencePolicy::Fresh => self.started,
        }
    }

    /// Counts a transaction served by the instance.
    pub fn served(&mut self) {
        self.served += 1;
        self.started = true;
    }

    /// Counts a block's end.
    pub fn block_ended(&mut self) {
        self.blocks_ended += 1;
    }

    /// The instance is blank again (blanked, rebuilt or recycled).
    pub fn restart(&mut self) {
        self.served = 0;
        self.blocks_ended = 0;
    }
}

/// The CLI names of the policy kinds (the part before `:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, Display, IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
enum PolicyKind {
    #[strum(serialize = "every-tx")]
    EveryTx,
    EveryBlock,
    UntilCrash,
    Fresh,
}

/// A policy spelled wrongly on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy `{0}`: expected every-tx:N, every-block:N, until-crash or fresh (N a positive integer)")]
pub struct ParsePolicyError(String);

impl std::str::FromStr for PersistencePolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePolicyError(s.to_owned());
        let (kind, n) = match s.split_once(':') {
            Some((kind, n)) => (kind, Some(n)),
            None => (s, None),
        };
        let kind: PolicyKind = kind.parse().map_err(|_| err())?;
        let n = n.map(|n| n.parse::<NonZeroU32>().map_err(|_| err())).transpose()?;
        Ok(match (kind, n) {
            (PolicyKind::EveryTx, n) => PersistencePolicy::EveryTransactions(n.unwrap_or(NonZeroU32::MIN)),
            (PolicyKind::EveryBlock, n) => PersistencePolicy::EveryBlocks(n.unwrap_or(NonZeroU32::MIN)),
            (PolicyKind::UntilCrash, None) => PersistencePolicy::UntilCrash,
            (PolicyKind::Fresh, None) => PersistencePolicy::Fresh,
            (_, Some(_)) => return Err(err()),
        })
    }
}

impl std::fmt::Display for PersistencePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistencePolicy::EveryTransactions(n) => write!(f, "{}:{n}", PolicyKind::EveryTx),
            PersistencePolicy::EveryBlocks(n) => write!(f, "{}:{n}", PolicyKind::EveryBlock),
            PersistencePolicy::UntilCrash => write!(f, "{}", PolicyKind::UntilCrash),
            PersistencePolicy::Fresh => write!(f, "{}", PolicyKind::Fresh),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_spelling_round_trips() {
        for s in ["every-tx:1", "every-tx:7", "every-block:3", "until-crash", "fresh"] {
            let p: PersistencePolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!("every-tx".parse::<PersistencePolicy>().unwrap(), PersistencePolicy::default());
        for bad in ["every-tx:0", "every-tx:-1", "every-tx:x", "fresh:2", "sometimes", "", "every-block:"] {
            assert!(bad.parse::<PersistencePolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_count_as_abi_md_says() {
        let mut s = Schedule::new("every-tx:2".parse().unwrap());
        assert!(!s.due());
        s.served();
        assert!(!s.due());
        s.served();
        assert!(s.due());
        s.restart();
        assert!(!s.due(), "a blank or recycle restarts the count");
        let mut s = Schedule::new("every-block:2".parse().unwrap());
        s.served();
        s.block_ended();
        assert!(!s.due());
        s.block_ended();
        assert!(s.due());
        let mut s = Schedule::new(PersistencePolicy::Fresh);
        assert!(!s.due(), "the first transaction runs on the first instance");
        s.served();
        s.restart();
        assert!(s.due(), "then every transaction gets a new one");
        let mut s = Schedule::new(PersistencePolicy::UntilCrash);
        (0..10).for_each(|_| s.served());
        assert!(!s.due());
    }

    #[test]
    fn config_spelling_matches_the_abi() {
        let p: PersistencePolicy = serde_json::from_str(r#"{"every_transactions": 5}"#).unwrap();
        assert_eq!(p, PersistencePolicy::EveryTransactions(NonZeroU32::new(5).unwrap()));
        let p: PersistencePolicy = serde_json::from_str(r#"{"every_blocks": 2}"#).unwrap();
        assert_eq!(p, PersistencePolicy::EveryBlocks(NonZeroU32::new(2).unwrap()));
        assert_eq!(
            serde_json::from_str::<PersistencePolicy>(r#""until_crash""#).unwrap(),
            PersistencePolicy::UntilCrash
        );
        assert_eq!(serde_json::from_str::<PersistencePolicy>(r#""fresh""#).unwrap(), PersistencePolicy::Fresh);
        assert!(serde_json::from_str::<PersistencePolicy>(r#"{"every_transactions": 0}"#).is_err());
        assert_eq!(serde_json::to_string(&PersistencePolicy::default()).unwrap(), r#"{"every_transactions":1}"#);
    }
}
