//! The executor ABI's data: the transaction schema and the world-state key
//! scheme, shared by the host (`core`, `peer`) and guest executors.
//!
//! This crate is `no_std` and allocation-free so that a guest executor can
//! decode a [`Transaction`] straight out of the bytes the host copied into its
//! memory (borrowed, zero-copy) and build world-state keys on its stack.
//!
//! # Transaction encoding
//!
//! `executor_validate(tx_ptr, tx_len)` receives one [`Transaction`] encoded
//! with [postcard](https://docs.rs/postcard) 1.x: integers as LEB128 varints
//! (`u32`, `u64`), enum variants as a varint index in declaration order, byte
//! strings as a varint length followed by the bytes. Variants are only ever
//! appended, so executors built against an older version still decode every
//! transaction they know.
//!
//! # World-state key scheme
//!
//! `host.state_get` takes raw key bytes. Keys begin with a one-byte tag and
//! hold integers little-endian; values are little-endian too:
//!
//! | key | bytes | value |
//! |---|---|---|
//! | [`account_key`] | `b'A'` + account `u32` | the account's owner (the authority that may spend from it), `u32` |
//! | [`asset_key`] | `b'D'` + asset `u32` | the asset's total supply, `u64` |
//! | [`balance_key`] | `b'B'` + account `u32` + asset `u32` | the balance, `u64`; absent means 0 |
//! | [`permission_key`] | `b'P'` + account `u32` + [`Permission::tag`] + asset `u32` | `[1]` when granted; absent otherwise |
//! | [`ADMIN_KEY`] | `b"admin"` | the account allowed to upgrade the executor, `u32` |
#![no_std]
#![warn(missing_docs)]

/// The version of the executor ABI this crate and the host implement:
/// raised whenever anything an executor relies on changes (exports,
/// imports, features, limits' meaning, verdicts, what a blank keeps).
/// Version 1 is the ABI as amended on 2026-11-29.
pub const ABI_VERSION: u32 = 1;

use serde::{Deserialize, Serialize};

/// An account, identified by number. Authorities are accounts too.
pub type AccountId = u32;
/// An asset definition, identified by number.
pub type AssetId = u32;

/// One transaction as the executor sees it.
///
/// Borrowed so a guest can decode it in place; the host encodes it from
/// owned data with the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction<'a> {
    /// The account that signed the transaction.
    pub authority: AccountId,
    /// A per-workload sequence number; executors may ignore it.
    pub nonce: u64,
    /// What the transaction asks for.
    #[serde(borrow)]
    pub instruction: Instruction<'a>,
}

/// The instructions of the synthetic ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instruction<'a> {
    /// Move `amount` of `asset` from `from` to `to`. The authority must own
    /// `from`, `to` must exist, and the balance must suffice.
    Transfer {
        /// Source account.
        from: AccountId,
        /// Destination account.
        to: AccountId,
        /// The asset moved.
        asset: AssetId,
        /// How much.
        amount: u64,
    },
    /// Create `amount` of `asset` in `account`. Needs [`Permission::MintAsset`].
    Mint {
        /// The credited account.
        account: AccountId,
        /// The asset minted.
        asset: AssetId,
        /// How much.
        amount: u64,
    },
    /// Destroy `amount` of `asset` held by `account`. Needs
    /// [`Permission::BurnAsset`] and a sufficient balance.
    Burn {
        /// The debited account.
        account: AccountId,
        /// The asset burnt.
        asset: AssetId,
        /// How much.
        amount: u64,
    },
    /// Give `account` a permission. Needs [`Permission::Grant`].
    Grant {
        /// Who receives the permission.
        account: AccountId,
        /// What is granted.
        permission: Permission,
    },
    /// Replace the executor by the given module. Only the admin
    /// ([`ADMIN_KEY`]) may.
    Upgrade {
        /// The new executor's wasm bytes.
        executor: &'a [u8],
    },
}

impl Instruction<'_> {
    /// A short, stable name of the instruction kind.
    pub fn kind(&self) -> InstructionKind {
        match self {
            Instruction::Transfer { .. } => InstructionKind::Transfer,
            Instruction::Mint { .. } => InstructionKind::Mint,
            Instruction::Burn { .. } => InstructionKind::Burn,
            Instruction::Grant { .. } => InstructionKind::Grant,
            Instruction::Upgrade { .. } => InstructionKind::Upgrade,
        }
    }
}

/// If `tx` is an encoded [`Transaction`] whose instruction is an
/// [`Instruction::Upgrade`], the new executor's bytes; otherwise `None`.
///
/// Reads the postcard encoding directly (two varints, the variant tag, a
/// length-prefixed byte string) so a host can spot upgrades in every
/// transaction without decoding the others.
pub fn upgrade_executor(tx: &[u8]) -> Option<&[u8]> {
    fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut at = 0;
    varint(tx, &mut at)?; // authority
    varint(tx, &mut at)?; // nonce
    if varint(tx, &mut at)? != InstructionKind::Upgrade as u64 {
        return None;
    }
    let len = usize::try_from(varint(tx, &mut at)?).ok()?;
    let end = at.checked_add(len)?;
    (end == tx.len()).then(|| &tx[at..end])
}

/// The kinds of [`Instruction`], as data (e.g. to index a rule table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum InstructionKind {
    /// [`Instruction::Transfer`]
    Transfer = 0,
    /// [`Instruction::Mint`]
    Mint = 1,
    /// [`Instruction::Burn`]
    Burn = 2,
    /// [`Instruction::Grant`]
    Grant = 3,
    /// [`Instruction::Upgrade`]
    Upgrade = 4,
}

impl InstructionKind {
    /// Every kind, in tag order.
    pub const ALL: [InstructionKind; 5] = [
        InstructionKind::Transfer,
        InstructionKind::Mint,
        InstructionKind::Burn,
        InstructionKind::Grant,
        InstructionKind::Upgrade,
    ];

    /// The lower-case name used in executor rule schemas.
    pub fn name(self) -> &'static str {
        match self {
            InstructionKind::Transfer => "transfer",
            InstructionKind::Mint => "mint",
            InstructionKind::Burn => "burn",
            InstructionKind::Grant => "grant",
            InstructionKind::Upgrade => "upgrade",
        }
    }
}

/// A permission an account may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// May mint the asset.
    MintAsset(AssetId),
    /// May burn the asset.
    BurnAsset(AssetId),
    /// May grant permissions to others.
    Grant,
}

impl Permission {
    /// The permission's tag byte in [`permission_key`].
    pub fn tag(self) -> u8 {
        match self {
            Permission::MintAsset(_) => b'm',
            Permission::BurnAsset(_) => b'b',
            Permission::Grant => b'g',
        }
    }

    fn asset(self) -> AssetId {
        match self {
            Permission::MintAsset(a) | Permission::BurnAsset(a) => a,
            Permission::Grant => 0,
        }
    }
}

/// The key of the admin record (who may upgrade the executor).
pub const ADMIN_KEY: &[u8] = b"admin";

/// The key of an account record; its value is the owner's [`AccountId`].
pub fn account_key(account: AccountId) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = b'A';
    k[1..5].copy_from_slice(&account.to_le_bytes());
    k
}

/// The key of an asset definition; its value is the total supply (`u64`).
pub fn asset_key(asset: AssetId) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = b'D';
    k[1..5].copy_from_slice(&asset.to_le_bytes());
    k
}

/// The key of a balance; its value is a `u64`, absent meaning 0.
pub fn balance_key(account: AccountId, asset: AssetId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'B';
    k[1..5].copy_from_slice(&account.to_le_bytes());
    k[5..9].copy_from_slice(&asset.to_le_bytes());
    k
}

/// The key of a granted permission; its value is `[1]`.
pub fn permission_key(account: AccountId, permission: Permission) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = b'P';
    k[1..5].copy_from_slice(&account.to_le_bytes());
    k[5] = permission.tag();
    k[6..10].copy_from_slice(&permission.asset().to_le_bytes());
    k
}

/// Deny reasons of the default executor, shared so the host's tests and the
/// workload can name them.
pub mod reasons {
    /// The authority does not own the transfer's source account.
    pub const NOT_OWNER: &str = "authority does not own the source account";
    /// An account named by the instruction does not exist.
    pub const NO_ACCOUNT: &str = "account does not exist";
    /// An asset named by the instruction does not exist.
    pub const NO_ASSET: &str = "asset does not exist";
    /// The balance is smaller than the amount.
    pub const INSUFFICIENT: &str = "insufficient balance";
    /// A zero amount is never meaningful.
    pub const ZERO_AMOUNT: &str = "amount must be positive";
    /// The credit would overflow the balance or the supply.
    pub const OVERFLOW: &str = "amount overflows the balance";
    /// The authority lacks the permission the instruction needs.
    pub const MISSING_PERMISSION: &str = "authority lacks the required permission";
    /// Only the admin may upgrade the executor.
    pub const NOT_ADMIN: &str = "only the admin may upgrade the executor";
    /// The payload could not be decoded.
    pub const MALFORMED: &str = "malformed transaction";
    /// The executor's rule table was not built (init did not run).
    pub const NOT_INITIALISED: &str = "executor not initialised";
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use super::*;

    #[test]
    fn upgrades_are_spotted_without_decoding() {
        let big = alloc::vec![7u8; 300];
        for (authority, nonce) in [(0, 0), (u32::MAX, u64::MAX), (300, 1 << 40)] {
            let up = Transaction { authority, nonce, instruction: Instruction::Upgrade { executor: &big } };
            let bytes = postcard::to_allocvec(&up).unwrap();
            assert_eq!(upgrade_executor(&bytes), Some(&big[..]));
            assert_eq!(upgrade_executor(&bytes[..bytes.len() - 1]), None, "truncated");
            let other =
                Transaction { authority, nonce, instruction: Instruction::Mint { account: 4, asset: 4, amount: 4 } };
            assert_eq!(upgrade_executor(&postcard::to_allocvec(&other).unwrap()), None);
        }
        assert_eq!(upgrade_executor(&[]), None);
        assert_eq!(upgrade_executor(&[0xff; 20]), None);
    }

    #[test]
    fn transaction_round_trips_borrowed() {
        let wasm = [0u8, 97, 115, 109];
        for instruction in [
            Instruction::Transfer { from: 1, to: 2, asset: 3, amount: 400 },
            Instruction::Mint { account: 1, asset: 2, amount: u64::MAX },
            Instruction::Burn { account: 7, asset: 0, amount: 1 },
            Instruction::Grant { account: 9, permission: Permission::BurnAsset(4) },
            Instruction::Upgrade { executor: &wasm },
        ] {
            let tx = Transaction { authority: 5, nonce: 77, instruction };
            let bytes: alloc::vec::Vec<u8> = postcard::to_allocvec(&tx).unwrap();
            let back: Transaction<'_> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, tx);
        }
    }

    #[test]
    fn encoding_is_pinned() {
        // The ABI promises this exact byte layout; a change breaks deployed executors.
        let tx = Transaction {
            authority: 300,
            nonce: 1,
            instruction: Instruction::Transfer { from: 1, to: 2, asset: 3, amount: 128 },
        };
        let bytes: alloc::vec::Vec<u8> = postcard::to_allocvec(&tx).unwrap();
        assert_eq!(bytes, [0xac, 0x02, 0x01, 0x00, 0x01, 0x02, 0x03, 0x80, 0x01]);
    }

    #[test]
    fn keys_are_distinct_and_laid_out_as_documented() {
        assert_eq!(account_key(1), [b'A', 1, 0, 0, 0]);
        assert_eq!(balance_key(1, 2), [b'B', 1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(permission_key(3, Permission::MintAsset(2)), [b'P', 3, 0, 0, 0, b'm', 2, 0, 0, 0]);
        assert_ne!(permission_key(3, Permission::MintAsset(2)), permission_key(3, Permission::BurnAsset(2)));
        assert_eq!(asset_key(2)[0], b'D');
    }
}
