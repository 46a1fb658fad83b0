(module
  ;; The same cache built in executor_init: part of the blank state.
  ;; A lookup table of 1,024 entries, each the end of a 64-round mixing
  ;; loop (~1 ms of interpretation, ~0.1 ms compiled), used by every
  ;; transaction. A flag at address 0 says whether it is built.
  (memory (export "memory") 2)
  (func $build (local $i i32) (local $r i32) (local $x i32)
    (loop $entries
      (local.set $x (i32.add (local.get $i) (i32.const 0x9e3779b9)))
      (local.set $r (i32.const 0))
      (loop $rounds
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 15))))
        (local.set $x (i32.mul (local.get $x) (i32.const 0x2c1b3c6d)))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 12))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $rounds (i32.lt_u (local.get $r) (i32.const 64))))
      (i32.store (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2))) (local.get $x))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $entries (i32.lt_u (local.get $i) (i32.const 1024))))
    (i32.store (i32.const 0) (i32.const 1)))
  (func $table (result i32)
    (if (i32.eqz (i32.load (i32.const 0))) (then (call $build)))
    (i32.const 4096))
  (func (export "executor_init") (call $build))
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "executor_validate") (param $tx i32) (param $len i32) (result i32)
    ;; Approve when the table's entry for the payload's length is even.
    (i32.and
      (i32.load (i32.add (call $table) (i32.shl (i32.and (local.get $len) (i32.const 1023)) (i32.const 2))))
      (i32.const 1))))
