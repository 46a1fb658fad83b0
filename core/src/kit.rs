//! The engine kit: everything an [`ExecutorInstance`] does that does not
//! depend on the engine, written once.
//!
//! A backend implements [`Engine`] — the handful of things that really
//! differ per engine: calling an export, lending memory and the
//! [`HostEnv`], reading and writing a global or a table element, growing
//! memory, converting a global's value — and wraps it in [`Instance`],
//! which provides the whole [`ExecutorInstance`] contract on top: capturing
//! the blank state, restoring it from the dirty map (tables only if
//! touched; a size mismatch means rebuild), carrying global values between
//! instances and growing memory from the host. Adding an engine therefore
//! means writing its configuration, its limiter and import glue, its trap
//! table and these accessors — not another copy of the restore loop.

use crate::backend::{Blanked, CallError, ExecutorInstance, Export, GlobalValue, Trap};
use crate::host::{HostEnv, Memories};
use crate::module::ModuleInfo;
use crate::snapshot::{ImageCache, MemoryImage, Restore};
use std::sync::Arc;

/// What differs per engine about one live instance (a store, an instance,
/// its memory, its exported globals and tables, indexed in the order of
/// [`Shared`]).
pub trait Engine: Send + 'static {
    /// A global's value as the engine holds it (numbers or references);
    /// numbers convert from Rust's (floats bit for bit).
    type Value: Clone + Send + From<i32> + From<i64> + From<f32> + From<f64>;
    /// A table element as the engine holds it.
    type Element: Clone + Send;

    /// Calls an ABI export with `i32` arguments; its `i32` result, if any.
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError>;

    /// The guest's memory, the books and the host state, at once (a host
    /// write and its record for the next blank happen together).
    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv);

    /// The host state alone: the driver reaches it several times per
    /// transaction, and lending memories costs some engines a lookup each.
    fn env(&mut self) -> &mut HostEnv;

    /// The books alone (the driver arms and reads them several times per
    /// transaction). The default lends both memories; the backends here
    /// keep the books' bytes instead ([`Books`]: they never move), because
    /// each lend of a memory costs a store lookup (wasmer's view, two).
    fn books(&mut self) -> &mut [u8] {
        self.memories_and_env().0.books
    }

    /// Grows linear memory by `pages` from the host side, through the same
    /// limiter as the guest's `memory.grow`.
    fn grow(&mut self, pages: u64) -> Result<(), String>;

    /// The value of mutable global `index`.
    fn global(&mut self, index: usize) -> Self::Value;

    /// Sets mutable global `index`.
    fn set_global(&mut self, index: usize, value: Self::Value) -> Result<(), String>;

    /// The current length of table `table`.
    fn table_len(&mut self, table: usize) -> u64;

    /// Element `index` of table `table` (below its length).
    fn element(&mut self, table: usize, index: u64) -> Self::Element;

    /// Sets element `index` of table `table`.
    fn set_element(&mut self, table: usize, index: u64, element: Self::Element) -> Result<(), String>;

    /// A global's value in the engine-independent form, or `None` for a
    /// reference (meaningless outside its store).
    fn portable(value: &Self::Value) -> Option<GlobalValue>;
}

/// The books' bytes, found once per instance, for engines whose memory
/// lookups cost (a store lookup per lend): the books never grow (their
/// maximum is their size), so they never move while their store lives.
#[derive(Debug, Clone, Copy)]
pub struct Books {
    at: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: a pointer into one store's memory, dereferenced only by whoever
// holds that store exclusively (the instance, or a host function it called).
unsafe impl Send for Books {}
// SAFETY: as for `Send`; a shared `Books` gives no access by itself.
unsafe impl Sync for Books {}

impl Books {
    /// The books at `at`, `len` bytes.
    ///
    /// # Safety
    ///
    /// `at..at + len` must be the bytes of a books memory (one that never
    /// grows) and stay valid as long as its store lives.
    pub unsafe fn new(at: *mut u8, len: usize) -> Self {
        Books {
            at: std::ptr::NonNull::new(at).unwrap_or(std::ptr::NonNull::dangling()),
            len: if at.is_null() { 0 } else { len },
        }
    }

    /// The bytes.
    ///
    /// # Safety
    ///
    /// The caller must hold the store the books belong to exclusively for
    /// as long as the slice lives, and lend no other slice of them.
    pub unsafe fn bytes<'a>(self) -> &'a mut [u8] {
        // SAFETY: as the caller and `new`'s caller promise.
        unsafe { std::slice::from_raw_parts_mut(self.at.as_ptr(), self.len) }
    }
}

/// What every instance of one compiled executor shares: the reserved
/// export names of its mutable globals and tables (in the order
/// [`Engine`]'s indices use; a backend looks each up once per instance)
/// and its blank memory image.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    globals: Vec<String>,
    tables: Vec<String>,
    image: ImageCache,
}

impl Shared {
    /// For instances of the module `info` describes.
    pub fn of(info: &ModuleInfo) -> Self {
        let globals = info.globals.iter().map(|g| g.export.clone()).collect();
        Shared { globals, tables: info.tables.clone(), image: ImageCache::new() }
    }

    /// Looks up every global and every table in `store` through the
    /// engine's export lookups; a missing one is a host failure (the
    /// prepared module always exports them).
    pub fn find<S, G, T>(
        &self,
        store: &mut S,
        mut global: impl FnMut(&mut S, &str) -> Option<G>,
        mut table: impl FnMut(&mut S, &str) -> Option<T>,
    ) -> Result<(Vec<G>, Vec<T>), CallError> {
        let globals = self.globals.iter().map(|n| global(store, n).ok_or_else(|| missing(n))).collect::<Result<_, _>>();
        let tables = self.tables.iter().map(|n| table(store, n).ok_or_else(|| missing(n))).collect::<Result<_, _>>();
        Ok((globals?, tables?))
    }
}

/// An instance's ABI exports as the engine's typed functions (no dynamic
/// signature checks or value boxing per call; core's module checks
/// guarantee the signatures): `alloc`, `validate`, `migrate` and the two
/// of type `() -> ()`, `executor_init` and the start function.
pub struct Exports<Alloc, Validate, Migrate, Nullary> {
    alloc: Alloc,
    validate: Validate,
    migrate: Option<Migrate>,
    /// `executor_init`, the start function.
    nullary: [Option<Nullary>; 2],
}

impl<A, V, M, N> Exports<A, V, M, N> {
    /// The exports the engine's lookups found (`None`: absent, or not of
    /// the ABI's type); `alloc` and `validate` must be there.
    pub fn find(
        alloc: Option<A>,
        validate: Option<V>,
        migrate: Option<M>,
        nullary: impl FnMut(Export) -> Option<N>,
    ) -> Result<Self, CallError> {
        Ok(Exports {
            alloc: alloc.ok_or_else(|| missing(Export::Alloc.name()))?,
            validate: validate.ok_or_else(|| missing(Export::Validate.name()))?,
            migrate,
            nullary: [Export::Init, Export::Start].map(nullary),
        })
    }

    /// Calls `export` with `args` through the engine's call of each kind of
    /// typed function. The engine's error is returned for the backend to
    /// map; an absent export or wrong arguments are a host failure.
    #[allow(clippy::too_many_arguments)]
    pub fn call<S, E>(
        &self,
        store: &mut S,
        export: Export,
        args: &[i32],
        alloc: impl FnOnce(&A, &mut S, i32) -> Result<i32, E>,
        validate: impl FnOnce(&V, &mut S, i32, i32) -> Result<i32, E>,
        migrate: impl FnOnce(&M, &mut S) -> Result<i32, E>,
        nullary: impl FnOnce(&N, &mut S) -> Result<(), E>,
    ) -> Result<Result<Option<i32>, E>, CallError> {
        let absent = || missing(export.name());
        Ok(match (export, args) {
            (Export::Alloc, &[len]) => alloc(&self.alloc, store, len).map(Some),
            (Export::Validate, &[ptr, len]) => validate(&self.validate, store, ptr, len).map(Some),
            (Export::Migrate, []) => migrate(self.migrate.as_ref().ok_or_else(absent)?, store).map(Some),
            (Export::Init | Export::Start, []) => {
                let f = self.nullary[usize::from(export == Export::Start)].as_ref().ok_or_else(absent)?;
                nullary(f, store).map(|()| None)
            }
            _ => return Err(absent()),
        })
    }
}

/// How a guest call that did not return ended, as the driver wants it:
/// an abort of core's (recorded in `env`) whatever the engine says, else
/// the engine's trap mapped by the backend's trap table ([`trap_table!`]),
/// else a host failure described by `message`.
pub fn call_error(env: &HostEnv, trap: Option<Trap>, message: impl FnOnce() -> String) -> CallError {
    match (env.abort(), trap) {
        (Some(_), _) => Trap::Aborted.into(),
        (None, Some(trap)) => trap.into(),
        (None, None) => CallError::Host(message()),
    }
}

/// A backend's `StoreData` (the [`HostEnv`] and both memories) and its
/// `lend` and `books_of` functions, for engines that lend a memory's
/// bytes with the store data as wasmtime and wasmi do
/// (`Memory::data_and_store_mut`, `Memory::data_mut`, a
/// `StoreContextMut`): `lend` gives a host function or the instance the
/// guest's memory, the books and the host state at once; `books_of` finds
/// the books' bytes once per instance ([`Books`]).
#[macro_export]
macro_rules! store_data {
    ($engine:ident) => {
        /// Store data: the host state and the two memories, the guest's
        /// and the books (attached right after instantiation: the
        /// prepared module has no start section).
        struct StoreData {
            env: $crate::HostEnv,
            memories: Option<($engine::Memory, $crate::kit::Books)>,
        }

        /// The guest's memory, the books and the host state of `store`,
        /// lent together.
        fn lend<'a>(
            (guest, books): ($engine::Memory, $crate::kit::Books),
            store: impl Into<$engine::StoreContextMut<'a, StoreData>>,
        ) -> ($crate::Memories<'a>, &'a mut $crate::HostEnv) {
            let (guest, data) = guest.data_and_store_mut(store);
            // SAFETY: the store is borrowed for `'a`, and the books are
            // another memory than the guest's.
            ($crate::Memories { guest, books: unsafe { books.bytes() } }, &mut data.env)
        }

        /// The books of `memory` (each lend of a memory is a store lookup).
        fn books_of(memory: $engine::Memory, store: &mut $engine::Store<StoreData>) -> $crate::kit::Books {
            let bytes = memory.data_mut(store);
            // SAFETY: the books memory never grows (its maximum is its
            // size), so its bytes stay where they are while the store lives.
            unsafe { $crate::kit::Books::new(bytes.as_mut_ptr(), bytes.len()) }
        }
    };
}

/// A backend's trap table: maps `$code` (an `Option` of the engine's trap
/// code, owned or borrowed) to core's [`Trap`], given the engine's names
/// for abi.md's trap codes in this order — unreachable, memory out of
/// bounds, table out of bounds, indirect call to null, bad signature,
/// integer overflow, division by zero, bad conversion to integer — then
/// its stack overflow and, if it has one, its own fuel exhaustion. Any
/// other code is `None` (a host failure: never a guessed code).
#[macro_export]
macro_rules! trap_table {
    ($code:expr, $engine:path: $unreachable:ident, $memory:ident, $table:ident, $null:ident, $signature:ident,
     $overflow:ident, $division:ident, $conversion:ident, $stack:ident $(, $fuel:ident)?) => {{
        use $engine as W;
        use $crate::{Trap, TrapCode};
        match $code {
            Some(W::$unreachable) => Some(Trap::Wasm(TrapCode::Unreachable)),
            Some(W::$memory) => Some(Trap::Wasm(TrapCode::MemoryOutOfBounds)),
            Some(W::$table) => Some(Trap::Wasm(TrapCode::TableOutOfBounds)),
            Some(W::$null) => Some(Trap::Wasm(TrapCode::IndirectCallToNull)),
            Some(W::$signature) => Some(Trap::Wasm(TrapCode::BadSignature)),
            Some(W::$overflow) => Some(Trap::Wasm(TrapCode::IntegerOverflow)),
            Some(W::$division) => Some(Trap::Wasm(TrapCode::IntegerDivisionByZero)),
            Some(W::$conversion) => Some(Trap::Wasm(TrapCode::BadConversionToInteger)),
            Some(W::$stack) => Some(Trap::StackOverflow),
            $(Some(W::$fuel) => Some(Trap::OutOfFuel),)?
            _ => None,
        }
    }};
}

/// The host failure for an export a prepared module must have.
pub fn missing(what: &str) -> CallError {
    CallError::Host(format!("the prepared module lacks {what}"))
}

/// The blank state of one instance.
struct BlankState<E: Engine> {
    memory: Arc<MemoryImage>,
    globals: Vec<E::Value>,
    /// The globals' values in portable form (`None`: a reference), to
    /// skip setting one that holds its blank value already — the shadow
    /// stack pointer is back where it was after every transaction, and a
    /// checked set costs wasmtime ≈ 200 instructions, a read ≈ 60.
    portable: Vec<Option<GlobalValue>>,
    tables: Vec<Vec<E::Element>>,
}

/// An [`ExecutorInstance`] on any [`Engine`]: the engine-independent half
/// of every backend's instance.
pub struct Instance<E: Engine> {
    engine: E,
    /// How many mutable globals and tables the engine holds.
    globals: usize,
    tables: usize,
    /// The executor's blank memory image, shared by all its instances.
    image: ImageCache,
    blank: Option<BlankState<E>>,
}

impl<E: Engine> Instance<E> {
    /// `engine`, holding the globals and tables `shared` names, sharing
    /// the executor's blank image.
    pub fn boxed(engine: E, shared: &Shared) -> Box<dyn ExecutorInstance> {
        let (globals, tables, image) = (shared.globals.len(), shared.tables.len(), shared.image.clone());
        Box::new(Instance { engine, globals, tables, image, blank: None })
    }
}

impl<E: Engine> ExecutorInstance for Instance<E> {
    fn call(&mut self, export: Export, args: &[i32]) -> Result<Option<i32>, CallError> {
        self.engine.call(export, args)
    }

    fn env(&mut self) -> &mut HostEnv {
        self.engine.env()
    }

    fn memories(&mut self) -> Memories<'_> {
        self.engine.memories_and_env().0
    }

    fn memories_and_env(&mut self) -> (Memories<'_>, &mut HostEnv) {
        self.engine.memories_and_env()
    }

    fn books(&mut self) -> &mut [u8] {
        self.engine.books()
    }

    fn mark_blank(&mut self) -> Result<(), CallError> {
        let e = &mut self.engine;
        let tables = (0..self.tables).map(|t| (0..e.table_len(t)).map(|i| e.element(t, i)).collect()).collect();
        let globals: Vec<E::Value> = (0..self.globals).map(|g| e.global(g)).collect();
        let portable = globals.iter().map(E::portable).collect();
        let (memories, env) = e.memories_and_env();
        let memory = self.image.adopt(env.layout(), memories);
        self.blank = Some(BlankState { memory, globals, portable, tables });
        Ok(())
    }

    fn blank(&mut self) -> Result<Blanked, CallError> {
        let blank = self.blank.as_ref().ok_or_else(|| CallError::Host("blank() before mark_blank()".into()))?;
        let e = &mut self.engine;
        let (memories, env) = e.memories_and_env();
        let restored = blank.memory.restore(memories, env.take_host_writes().as_slice());
        let Restore::Done { tables_dirty, .. } = restored else {
            return Ok(Blanked::NeedsRebuild);
        };
        let failed = |what: &str, e: String| CallError::Host(format!("blank: {what}: {e}"));
        for (g, (v, portable)) in blank.globals.iter().zip(&blank.portable).enumerate() {
            if portable.is_some() && E::portable(&e.global(g)) == *portable {
                continue;
            }
            e.set_global(g, v.clone()).map_err(|m| failed("global", m))?;
        }
        if tables_dirty {
            for (t, elements) in blank.tables.iter().enumerate() {
                if e.table_len(t) != elements.len() as u64 {
                    return Ok(Blanked::NeedsRebuild);
                }
                for (i, element) in elements.iter().enumerate() {
                    e.set_element(t, i as u64, element.clone()).map_err(|m| failed("table", m))?;
                }
            }
        }
        Ok(Blanked::Restored)
    }

    fn memory_size(&mut self) -> u64 {
        self.engine.memories_and_env().0.guest.len() as u64
    }

    fn global_values(&mut self) -> Result<Option<Vec<GlobalValue>>, CallError> {
        let e = &mut self.engine;
        Ok((0..self.globals).map(|g| E::portable(&e.global(g))).collect())
    }

    fn set_global_values(&mut self, values: &[GlobalValue]) -> Result<(), CallError> {
        if values.len() != self.globals {
            return Err(CallError::Host(format!("{} global values for {} globals", values.len(), self.globals)));
        }
        for (g, v) in values.iter().enumerate() {
            let value = match *v {
                GlobalValue::I32(v) => v.into(),
                GlobalValue::I64(v) => v.into(),
                GlobalValue::F32(bits) => f32::from_bits(bits).into(),
                GlobalValue::F64(bits) => f64::from_bits(bits).into(),
            };
            self.engine.set_global(g, value).map_err(CallError::Host)?;
        }
        Ok(())
    }

    fn grow_memory(&mut self, pages: u64) -> Result<(), CallError> {
        self.engine.grow(pages).map_err(|e| CallError::Host(format!("host-side growth: {e}")))
    }
}
