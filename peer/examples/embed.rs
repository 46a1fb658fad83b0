//! Embedding the host in a peer: load an executor on a backend, validate
//! transactions against world state, end blocks, read the stats. The same
//! code runs on every backend; only the constructor differs.
//! `cargo run --release -p peer --example embed` (also run by `cargo test`).

use executor_core::{Driver, DriverConfig, ExecutorHost, Limits, SharedState, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;

fn embed(host: Arc<dyn ExecutorHost>) -> Result<(), executor_core::Error> {
    // Asset 3 exists; account 1, owned by authority 7, holds 100 of it.
    let world: BTreeMap<Vec<u8>, Vec<u8>> = [
        (abi::account_key(1).to_vec(), 7u32.to_le_bytes().to_vec()),
        (abi::account_key(2).to_vec(), 8u32.to_le_bytes().to_vec()),
        (abi::asset_key(3).to_vec(), 100u64.to_le_bytes().to_vec()),
        (abi::balance_key(1, 3).to_vec(), 100u64.to_le_bytes().to_vec()),
    ]
    .into();
    let state: SharedState = Arc::new(world);
    // The default config: a blank instance for every transaction (`every-tx:1`).
    let mut executor = Driver::new(host, peer::DEFAULT_EXECUTOR, DriverConfig::default())?;
    let transfer = |authority, amount| {
        let instruction = abi::Instruction::Transfer { from: 1, to: 2, asset: 3, amount };
        postcard::to_allocvec(&abi::Transaction { authority, nonce: 0, instruction }).expect("encodes")
    };
    assert_eq!(executor.validate(&transfer(7, 60), state.clone())?, Verdict::Approved);
    assert!(matches!(executor.validate(&transfer(9, 60), state.clone())?, Verdict::Denied { .. }));
    assert!(matches!(executor.validate(&transfer(7, 500), state.clone())?, Verdict::Denied { .. }));
    executor.end_block();
    // A new executor version (here the same bytes): loaded, migrated, then served.
    executor.upgrade(peer::DEFAULT_EXECUTOR, state.clone())?;
    assert_eq!(executor.validate(&transfer(7, 60), state)?, Verdict::Approved);
    let s = executor.stats();
    println!(
        "{}: {} approved, {} denied, {} blanks, {} upgrade",
        executor.backend(),
        s.approved,
        s.denied,
        s.blanks,
        s.upgrades
    );
    assert_eq!(s.upgrades, 1);
    Ok(())
}

fn main() -> Result<(), executor_core::Error> {
    let limits = Limits::default();
    #[cfg(feature = "wasmtime")]
    embed(backend_wasmtime::host(limits.clone()))?;
    #[cfg(feature = "wasmer")]
    embed(backend_wasmer::host(limits.clone()))?;
    #[cfg(feature = "wasmi")]
    embed(backend_wasmi::host(limits))?;
    Ok(())
}
