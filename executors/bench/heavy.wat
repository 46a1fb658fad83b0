;; A heavy executor standing in for a signature check: hundreds of µs of
;; compute per transaction (on wasmtime), like the executor measured in the
;; seed. It mixes the payload into a 256-bit state with 16,384 rounds of
;; add-rotate-xor (ChaCha-style quarter rounds), keeps a 64 KiB scratch
;; buffer it overwrites each time (so a blank has pages to restore), and
;; approves when the final state's low bit is 0 — about half the
;; transactions, decided by their bytes.
(module
  (memory (export "memory") 4)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param $p i32) (param $len i32) (result i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $i i32) (local $j i32)
    (local.set $a (i32.const 0x61707865)) (local.set $b (i32.const 0x3320646e))
    (local.set $c (i32.const 0x79622d32)) (local.set $d (i32.const 0x6b206574))
    ;; absorb the payload
    (block $absorbed
      (loop $absorb
        (br_if $absorbed (i32.ge_u (local.get $j) (local.get $len)))
        (local.set $a (i32.xor (local.get $a) (i32.load8_u (i32.add (local.get $p) (local.get $j)))))
        (local.set $a (i32.add (local.get $a) (local.get $b)))
        (local.set $d (i32.rotl (i32.xor (local.get $d) (local.get $a)) (i32.const 16)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $absorb)))
    ;; 16,384 quarter rounds, writing the state to the scratch buffer
    (loop $round
      (local.set $a (i32.add (local.get $a) (local.get $b)))
      (local.set $d (i32.rotl (i32.xor (local.get $d) (local.get $a)) (i32.const 16)))
      (local.set $c (i32.add (local.get $c) (local.get $d)))
      (local.set $b (i32.rotl (i32.xor (local.get $b) (local.get $c)) (i32.const 12)))
      (local.set $a (i32.add (local.get $a) (local.get $b)))
      (local.set $d (i32.rotl (i32.xor (local.get $d) (local.get $a)) (i32.const 8)))
      (local.set $c (i32.add (local.get $c) (local.get $d)))
      (local.set $b (i32.rotl (i32.xor (local.get $b) (local.get $c)) (i32.const 7)))
      (i32.store offset=65536 (i32.and (i32.shl (local.get $i) (i32.const 2)) (i32.const 0xfffc)) (local.get $a))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $round (i32.lt_u (local.get $i) (i32.const 16384))))
    (i32.and (i32.xor (local.get $a) (local.get $c)) (i32.const 1))))
