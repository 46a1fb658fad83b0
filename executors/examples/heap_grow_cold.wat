(module
  ;; A heap grown during the transaction: under every-tx:1 every blank is a rebuild (memory cannot shrink in place).
  ;; The allocator model: a transaction needs a 1 MiB heap (16 pages past
  ;; the first) and writes a word in each of its pages; the heap grows when
  ;; memory is smaller than that, as a real allocator's does.
  (memory (export "memory") 1)
  (func $reserve
    (if (i32.lt_u (memory.size) (i32.const 17))
      (then (drop (memory.grow (i32.sub (i32.const 17) (memory.size)))))))
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param $tx i32) (param $len i32) (result i32) (local $page i32)
    (call $reserve)
    (loop $pages
      (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $page) (i32.const 16))) (local.get $len))
      (local.set $page (i32.add (local.get $page) (i32.const 1)))
      (br_if $pages (i32.lt_u (local.get $page) (i32.const 16))))
    (i32.const 0)))
