;; The smallest useful executor (executor ABI v1): approves a transaction
;; when the world state holds the key "open" with value 1, else denies it
;; with a reason. Check it:   peer check templates/wat/executor.wat
;; Run it:                    peer run --executor templates/wat/executor.wat
(module
  ;; Host imports: only what is used. All pointers and lengths are i32.
  (import "host" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "host" "deny_reason" (func $deny_reason (param i32 i32)))

  ;; Exactly one memory, exported as `memory`.
  (memory (export "memory") 1)
  (data (i32.const 0) "open")
  (data (i32.const 16) "the ledger is closed")

  ;; The host copies each encoded transaction to the address this returns
  ;; (here a fixed buffer from 1024 up; 0 or a range outside memory would
  ;; end the transaction as rejected(host_fault)).
  (func (export "executor_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 64512)) (then (return (i32.const 0))))
    (i32.const 1024))

  ;; 0 approves, 1 denies (any other value is rejected(bad_verdict)).
  (func (export "executor_validate") (param $tx i32) (param $len i32) (result i32)
    ;; state_get(key, key_len, out, out_cap) -> value length, or -1 if absent.
    (if (i32.eq (call $state_get (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 1)) (i32.const 1))
      (then (if (i32.eq (i32.load8_u (i32.const 64)) (i32.const 1)) (then (return (i32.const 0))))))
    (call $deny_reason (i32.const 16) (i32.const 20))
    (i32.const 1)))
