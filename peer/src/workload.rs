//! The deterministic synthetic workload: a small in-memory ledger and a
//! seeded generator of transactions against it.
//!
//! Everything here is a pure function of the seed and the verdicts, so two
//! runs that agree on every verdict agree on every transaction and on the
//! final state, whatever the backend.

use abi::{AccountId, AssetId, Instruction, Permission, Transaction};
use executor_core::{SharedState, StateView, WorldState};
use sha2::{Digest, Sha256};
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
/// A persistent map: a copy shares everything it does not change, so
/// in-order parallel validation can hand every execution the newest state
/// at the cost of a pointer, not of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: imbl::OrdMap<Inline, Inline>,
}

/// A key or value of the ledger. The synthetic ledger's are short (the
/// `abi` layout's longest key is 10 bytes, its longest value 8) and kept
/// inline, so that copying a map node — a persistent map copies every node
/// a write changes while a snapshot still shares it — allocates nothing; a
/// replayed workload's may be longer and are shared on the heap. Ordered
/// as its bytes are.
#[derive(Clone, PartialEq, Eq)]
enum Inline {
    /// Up to [`Inline::MAX`] bytes.
    Short { len: u8, bytes: [u8; Inline::MAX] },
    /// Longer.
    Long(Arc<[u8]>),
}

impl Inline {
    const MAX: usize = 15;

    fn new(bytes: &[u8]) -> Self {
        if bytes.len() > Self::MAX {
            return Inline::Long(bytes.into());
        }
        let mut inline = [0; Self::MAX];
        inline[..bytes.len()].copy_from_slice(bytes);
        Inline::Short { len: bytes.len() as u8, bytes: inline }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Inline::Short { len, bytes } => &bytes[..usize::from(*len)],
            Inline::Long(bytes) => bytes,
        }
    }
}

impl std::hash::Hash for Inline {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for Inline {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Ord for Inline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl PartialOrd for Inline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(self.as_slice()))
    }
}

impl StateView for Ledger {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Inline::as_slice)
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
        self.entries.insert(Inline::new(key), Inline::new(value));
    }

    /// Writes `value` under `key`; `None` removes the key.
    pub fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        match value {
            Some(value) => self.put(key, value),
            None => {
                self.entries.remove(key);
            }
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The writes the synthetic transaction `tx` makes if approved against
    /// this state — each key it writes with its new value (`None`: removed)
    /// — computed on a copy (which shares all it does not change); `None`
    /// if `tx` is not a transaction of this ledger.
    pub fn writes_of(&self, tx: &[u8]) -> Option<Writes> {
        let instruction = decode(tx)?.instruction;
        let mut after = self.clone();
        let keys = after.apply(&instruction);
        let writes = keys.into_iter().map(|key| {
            let value = after.get(&key).map(<[u8]>::to_vec);
            (key, value)
        });
        Some(writes.collect())
    }

    /// The balance with the most of `asset` (the lowest account of equals),
    /// if any account holds some.
    fn richest(&self, asset: AssetId) -> Option<(AccountId, u64)> {
        (0..ACCOUNTS)
            .map(|a| (a, self.balance(a, asset)))
            .filter(|&(_, b)| b > 0)
            .max_by_key(|&(a, b)| (b, u32::MAX - a))
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

    /// Applies an approved instruction and returns the keys it wrote.
    /// Upgrades change no ledger entry (the peer installs the executor).
    /// Arithmetic saturates: the executor approved it, but the ledger must
    /// never panic whatever an executor approves.
    pub fn apply(&mut self, instruction: &Instruction<'_>) -> Vec<Vec<u8>> {
        match *instruction {
            Instruction::Transfer { from, to, asset, amount } => {
                let debit = self.balance(from, asset).saturating_sub(amount);
                self.set_balance(from, asset, debit);
                let credit = self.balance(to, asset).saturating_add(amount);
                self.set_balance(to, asset, credit);
                vec![abi::balance_key(from, asset).to_vec(), abi::balance_key(to, asset).to_vec()]
            }
            Instruction::Mint { account, asset, amount } => {
                let supply = self.u64_at(&abi::asset_key(asset)).saturating_add(amount);
                self.put(&abi::asset_key(asset), &supply.to_le_bytes());
                let b = self.balance(account, asset).saturating_add(amount);
                self.set_balance(account, asset, b);
                vec![abi::asset_key(asset).to_vec(), abi::balance_key(account, asset).to_vec()]
            }
            Instruction::Burn { account, asset, amount } => {
                let supply = self.u64_at(&abi::asset_key(asset)).saturating_sub(amount);
                self.put(&abi::asset_key(asset), &supply.to_le_bytes());
                let b = self.balance(account, asset).saturating_sub(amount);
                self.set_balance(account, asset, b);
                vec![abi::asset_key(asset).to_vec(), abi::balance_key(account, asset).to_vec()]
            }
            Instruction::Grant { account, permission } => {
                self.grant(account, permission);
                vec![abi::permission_key(account, permission).to_vec()]
            }
            Instruction::Upgrade { .. } => Vec::new(),
        }
    }

    /// SHA-256 over every entry in key order, length-framed; hex.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.entries {
            let (k, v) = (k.as_slice(), v.as_slice());
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

    /// A whole block of `len` transactions, every one drawn from `ledger`
    /// as it is at the block's start — a block exists before it is
    /// validated, as on a real chain, so it is the same whoever validates
    /// it and however. With `shape.hot_percent` > 0, that share are
    /// transfers from the block's hot account (see [`HOT_ASSET`]); with
    /// `shape.upgrade`, that position is an upgrade.
    pub fn block(&mut self, ledger: &Ledger, len: u64, shape: BlockShape<'_>) -> Vec<Vec<u8>> {
        let hot = if shape.hot_percent > 0 { ledger.richest(HOT_ASSET) } else { None };
        (0..len)
            .map(|i| match shape.upgrade {
                Some((at, executor)) if at == i => self.upgrade(executor),
                _ if shape.hot_percent > 0 && self.rng.percent(shape.hot_percent) => match hot {
                    Some((from, balance)) => self.hot(ledger, from, balance, len),
                    None => self.next(ledger),
                },
                _ => self.next(ledger),
            })
            .collect()
    }

    /// A transfer from the hot account `from`, signed by its owner, of at
    /// most `balance / len`: every one the block holds is affordable
    /// together, so each is approved and writes the balance the next one
    /// reads.
    fn hot(&mut self, ledger: &Ledger, from: AccountId, balance: u64, len: u64) -> Vec<u8> {
        let r = &mut self.rng;
        let amount = 1 + r.below((balance / len.max(1)).max(1));
        let mut to = r.below(u64::from(ACCOUNTS)) as u32;
        if to == from {
            to = (to + 1) % ACCOUNTS; // a transfer to itself would write nothing new
        }
        let authority = ledger.owner(from).unwrap_or(from);
        self.nonce += 1;
        let instruction = Instruction::Transfer { from, to, asset: HOT_ASSET, amount };
        let tx = Transaction { authority, nonce: self.nonce, instruction };
        postcard::to_allocvec(&tx).expect("encoding into a Vec cannot fail")
    }
}

/// The asset of hot transfers. A block's hot account is the one with the
/// most of it at the block's start (the lowest of equals): the ledger keeps
/// redistributing it, so there always is one, and it can afford the block.
pub const HOT_ASSET: AssetId = 0;

/// What a block holds beyond the generator's usual mix.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockShape<'a> {
    /// Percent of transactions (0–100) that are transfers from the block's
    /// hot account, each reading the balance the previous one wrote:
    /// conflicts for in-order parallel validation, dialled in.
    pub hot_percent: u64,
    /// An upgrade to these bytes at this position of the block.
    pub upgrade: Option<(u64, &'a [u8])>,
}

/// What a transaction writes if approved: each key with its new value
/// (`None`: the key is removed), in order.
pub type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The ledger as the embedder's world state for in-order parallel
/// validation: snapshots are a pointer copy, approved transactions are
/// applied in place (copying only what a running execution still shares),
/// and the keys each wrote are reported. A replayed workload's block
/// carries its transactions' writes ([`LedgerState::recorded`]): they are
/// applied as recorded, whatever the transaction's bytes mean.
#[derive(Debug, Clone, Default)]
pub struct LedgerState(pub Arc<Ledger>, pub Option<Vec<Writes>>);

impl LedgerState {
    /// The world of `ledger`, its transactions' writes computed from their
    /// bytes.
    pub fn new(ledger: Ledger) -> Self {
        LedgerState(Arc::new(ledger), None)
    }

    /// The current block's writes, by position, as a recording holds them
    /// (`None`: computed from the synthetic transactions' bytes).
    pub fn recorded(&mut self, writes: Option<Vec<Writes>>) {
        self.1 = writes;
    }
}

impl StateView for LedgerState {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.0.get(key)
    }
}

impl WorldState for LedgerState {
    fn snapshot(&self) -> SharedState {
        self.0.clone()
    }

    fn apply(&mut self, tx: &[u8]) -> Option<Vec<Vec<u8>>> {
        let decoded = decode(tx).expect("the generator's own encoding decodes");
        Some(Arc::make_mut(&mut self.0).apply(&decoded.instruction))
    }

    fn apply_at(&mut self, index: usize, tx: &[u8]) -> Option<Vec<Vec<u8>>> {
        let Some(recorded) = &self.1 else { return self.apply(tx) };
        let writes = recorded.get(index)?;
        let ledger = Arc::make_mut(&mut self.0);
        for (key, value) in writes {
            ledger.write(key, value.as_deref());
        }
        Some(writes.iter().map(|(k, _)| k.clone()).collect())
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
    fn hot_blocks_chain_affordable_transfers_from_the_richest_account() {
        let mut rng = Rng::new(3);
        let ledger = Ledger::genesis(&mut rng);
        let (from, balance) = ledger.richest(HOT_ASSET).unwrap();
        assert!((0..ACCOUNTS).all(|a| ledger.balance(a, HOT_ASSET) <= balance));
        let mut g = Generator::new(rng);
        let block = g.block(&ledger, 100, BlockShape { hot_percent: 100, upgrade: Some((5, b"x")) });
        assert_eq!(block.len(), 100);
        let mut total = 0;
        for (i, tx) in block.iter().enumerate() {
            match decode(tx).unwrap().instruction {
                Instruction::Upgrade { executor } => assert_eq!((i, executor), (5, &b"x"[..])),
                Instruction::Transfer { from: f, to, asset, amount } => {
                    assert_eq!((f, asset), (from, HOT_ASSET));
                    assert_ne!(to, from);
                    total += amount;
                }
                other => panic!("not a hot transfer: {other:?}"),
            }
        }
        assert!(total <= balance, "the block's hot transfers are affordable together");
        let mut plain = Generator::new(Rng::new(9));
        let mut shaped = Generator::new(Rng::new(9));
        assert_eq!(
            plain.block(&ledger, 50, BlockShape::default()),
            shaped.block(&ledger, 50, BlockShape { hot_percent: 0, upgrade: None }),
            "no hot share draws nothing more"
        );
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
            let written = a.apply(&decoded.instruction);
            if let Instruction::Transfer { from, asset, .. } = decoded.instruction {
                assert!(written.contains(&abi::balance_key(from, asset).to_vec()), "the debit is reported");
            }
        }
        assert_eq!(kinds.len(), 4, "transfer, mint, burn, grant all generated");
        assert_ne!(a.digest(), b.digest());
    }
}
