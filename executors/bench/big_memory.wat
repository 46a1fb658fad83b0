;; A 16 MiB executor: executor_init fills all of it (a large blank state);
;; each transaction reads an entry and dirties two pages. A blank must cost
;; the two pages, not the 16 MiB.
(module
  (memory (export "memory") 256)
  (func (export "executor_init")
    (memory.fill (i32.const 0) (i32.const 0x5a) (i32.const 16777216)))
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param $p i32) (param $len i32) (result i32)
    (local $x i32)
    (local.set $x (i32.load8_u (local.get $p)))
    (i32.store8 (i32.const 8000000) (local.get $x))
    (i32.store8 (i32.const 12000000) (local.get $x))
    (i32.and (i32.load8_u (i32.shl (local.get $x) (i32.const 16))) (i32.const 0))))
