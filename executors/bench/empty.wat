;; The cheapest possible executor: approves at once. The baseline "warm
;; transaction" the blank-cost targets are measured against.
(module
  (memory (export "memory") 17)
  (func (export "executor_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "executor_validate") (param i32 i32) (result i32) (i32.const 0)))
