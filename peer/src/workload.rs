//! The deterministic synthetic workload: a small in-memory ledger and a
//! seeded generator of transactions against it.
//!
//! Everything here is a pure function of the seed and the verdicts, so two
//! runs that agree on every verdict agree on every transaction and on the
//! final state, whatever the backend.

use abi::{AccountId, AssetId, Instruction, Permission, Transaction};
use executor_core::StateView;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Accounts in the genesis ledger; account 0 is the admin.
pub const ACCOUNTS: u32 = 64;
/// Asset definitions in the genesis ledger.
pub const ASSETS: u32 = 4;

/// SplitMix64: tiny, fast, and stable forever (no dependency whose stream
/// could change under us and silently change every digest).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The world state: raw keys and values as the `abi` crate lays them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StateView for Ledger {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }
}

impl Ledger {
    /// The genesis ledger of a seed: accounts (most self-owned, every
    /// eighth owned by its predecessor), assets with supplies, balances, and
    /// a few holders of mint/burn/grant permissions. Account 0 is the admin.
    pub fn genesis(rng: &mut Rng) -> Self {
        let mut l = Ledger::default();
        l.put(abi::ADMIN_KEY, &0u32.to_le_bytes());
        for account in 0..ACCOUNTS {
            let owner = if account % 8 == 7 { account - 1 } else { account };
            l.put(&abi::account_key(account), &owner.to_le_bytes());
        }
        for asset in 0..ASSETS {
            let mut supply = 0u64;
            for account in 0..ACCOUNTS {
                let amount = rng.below(1000);
                if amount > 0 {
                    l.set_balance(account, asset, amount);
                    supply += amount;
                }
            }
            l.put(&abi::asset_key(asset), &supply.to_le_bytes());
            l.grant(1 + asset, Permission::MintAsset(asset));
            l.grant(1 + (asset + 1) % ASSETS, Permission::BurnAsset(asset));
        }
        l.grant(0, Permission::Grant);
        l.grant(5, Permission::Grant);
        l
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.entries.insert(key.to_vec(), value.to_vec());
    }

    fn u64_at(&self, key: &[u8]) -> u64 {
        self.get(key).and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes)
    }

    /// An account's owner, if the account exists.
    pub fn owner(&self, account: AccountId) -> Option<AccountId> {
        self.get(&abi::account_key(account)).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes)
    }

    /// A balance (0 when absent).
    pub fn balance(&self, account: AccountId, asset: AssetId) -> u64 {
        self.u64_at(&abi::balance_key(account, asset))
    }

    fn set_balance(&mut self, account: AccountId, asset: AssetId, amount: u64) {
        let key = abi::balance_key(account, asset);
        if amount == 0 {
            self.entries.remove(&key[..]);
        } else {
            self.put(&key, &amount.to_le_bytes());
        }
    }

    fn grant(&mut self, account: AccountId, permission: Permission) {
        self.put(&abi::permission_key(account, permission), &[1]);
    }

    /// Whether `account` holds `permission`.
    pub fn holds(&self, account: AccountId, permission: Permission) -> bool {
        self.get(&abi::permission_key(account, permission)) == Some(&[1][..])
    }

    /// Applies an approved instruction. Upgrades change no ledger entry
    /// (the peer installs the executor). Arithmetic saturates: the executor
    /// approved it, but the ledger must never panic whatever an executor
    /// approves.
    pub fn apply(&mut self, instruction: &Instruction<'_>) {
        match *instruction {
            Instruction::Transfer { from, to, asset, amount } => {
                let debit = self.balance(from, asset).saturating_sub(amount);
                self.set_balance(from, asset, debit);
                let credit = self.balance(to, asset).saturating_add(amount);
                self.set_balance(to, asset, credit);
            }
            Instruction::Mint { account, asset, amount } => {
                let supply = self.u64_at(&abi::asset_key(asset)).saturating_add(amount);
                self.put(&abi::asset_key(asset), &supply.to_le_bytes());
                let b = self.balance(account, asset).saturating_add(amount);
                self.set_balance(account, asset, b);
            }
            Instruction::Burn { account, asset, amount } => {
                let supply = self.u64_at(&abi::asset_key(asset)).saturating_sub(amount);
                self.put(&abi::asset_key(asset), &supply.to_le_bytes());
                let b = self.balance(account, asset).saturating_sub(amount);
                self.set_balance(account, asset, b);
            }
            Instruction::Grant { account, permission } => self.grant(account, permission),
            Instruction::Upgrade { .. } => {}
        }
    }

    /// SHA-256 over every entry in key order, length-framed; hex.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.entries {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        hex::encode(h.finalize())
    }
}

/// Generates transactions: mostly valid transfers, plus overdrafts,
/// transfers from accounts the authority does not own, mints and burns with
/// and without permission, grants — a mix the default executor approves and
/// denies.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    nonce: u64,
}

impl Generator {
    /// A generator; use the same rng that made the genesis ledger.
    pub fn new(rng: Rng) -> Self {
        Generator { rng, nonce: 0 }
    }

    /// The next transaction against `ledger`, encoded.
    pub fn next(&mut self, ledger: &Ledger) -> Vec<u8> {
        let r = &mut self.rng;
        let account = |r: &mut Rng| r.below(u64::from(ACCOUNTS)) as u32;
        let asset = |r: &mut Rng| r.below(u64::from(ASSETS)) as u32;
        let roll = r.below(100);
        let (authority, instruction) = if roll < 62 {
            let from = account(r);
            let asset = asset(r);
            let mut authority = ledger.owner(from).unwrap_or(from);
            if r.percent(6) {
                authority = account(r); // probably not the owner
            }
            let balance = ledger.balance(from, asset);
            let amount = if r.percent(8) { balance + 1 + r.below(100) } else { 1 + r.below(balance.max(1)) };
            let to = if r.percent(3) { ACCOUNTS + account(r) } else { account(r) };
            (authority, Instruction::Transfer { from, to, asset, amount })
        } else if roll < 76 {
            let asset = asset(r);
            // The minter of asset a is account 1 + a; others lack permission.
            let authority = if r.percent(70) { 1 + asset } else { account(r) };
            (authority, Instruction::Mint { account: account(r), asset, amount: 1 + r.below(500) })
        } else if roll < 90 {
            let asset = asset(r);
            let authority = if r.percent(70) { 1 + (asset + 1) % ASSETS } else { account(r) };
            let target = account(r);
            let balance = ledger.balance(target, asset);
            let amount = if r.percent(10) { balance + 1 } else { 1 + r.below(balance.max(1)) };
            (authority, Instruction::Burn { account: target, asset, amount })
        } else {
            let authority = if r.percent(50) { [0, 5][r.below(2) as usize] } else { account(r) };
            let permission = match r.below(3) {
                0 => Permission::MintAsset(asset(r)),
                1 => Permission::BurnAsset(asset(r)),
                _ => Permission::Grant,
            };
            (authority, Instruction::Grant { account: account(r), permission })
        };
        self.nonce += 1;
        let tx = Transaction { authority, nonce: self.nonce, instruction };
        postcard::to_allocvec(&tx).expect("encoding into a Vec cannot fail")
    }
}

impl Generator {
    /// An upgrade to `executor`, signed by the admin (account 0), which the
    /// default executor approves.
    pub fn upgrade(&mut self, executor: &[u8]) -> Vec<u8> {
        self.nonce += 1;
        let tx = Transaction { authority: 0, nonce: self.nonce, instruction: Instruction::Upgrade { executor } };
        postcard::to_allocvec(&tx).expect("encoding into a Vec cannot fail")
    }
}

/// Decodes a transaction the generator made.
pub fn decode(bytes: &[u8]) -> Option<Transaction<'_>> {
    postcard::from_bytes(bytes).ok()
}

/// The ledger as shared state, held by the driver only during a call.
pub type SharedLedger = Arc<Ledger>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_stream_is_pinned() {
        // Digests depend on this stream; it must never change.
        let mut r = Rng::new(42);
        assert_eq!(r.next_u64(), 0xbdd7_3226_2feb_6e95);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn generation_is_deterministic_and_applies() {
        let mut rng = Rng::new(7);
        let mut a = Ledger::genesis(&mut rng);
        let mut g = Generator::new(rng);
        let mut rng2 = Rng::new(7);
        let b = Ledger::genesis(&mut rng2);
        assert_eq!(a.digest(), b.digest());
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let tx = g.next(&a);
            let decoded = decode(&tx).unwrap();
            kinds.insert(decoded.instruction.kind());
            a.apply(&decoded.instruction);
        }
        assert_eq!(kinds.len(), 4, "transfer, mint, burn, grant all generated");
        assert_ne!(a.digest(), b.digest());
    }
}
