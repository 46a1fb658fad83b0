;; Dirties four 4 KiB pages per transaction (one byte in each, 64 KiB
;; apart), then approves. Memory is 16 pages (1 MiB); the bench also runs a
;; copy with 256 pages (16 MiB) to show a blank does not grow with memory.
(module
  (memory (export "memory") 16)
  (global $n (mut i32) (i32.const 0))
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 70000) (global.get $n))
    (i32.store8 (i32.const 140000) (global.get $n))
    (i32.store8 (i32.const 210000) (global.get $n))
    (i32.store8 (i32.const 280000) (global.get $n))
    (i32.const 0)))
