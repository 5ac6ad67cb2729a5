;; The super-instructions the compiler fuses from common sequences (sandboxes/wasm/wasm_ops.h),
;; each checked against the unfused result and at its edges: wrapping address arithmetic,
;; out-of-bounds traps, br_table's default, and every partial step of a chain.

;; A switch through a lookup table, as clang compiles a Lua VM's opcode dispatch:
;; br_table on mem32[((x & 127) << 2) + 16] - 2 (BR_TABLE_LD), and its partial steps.
(module
  (memory 1)
  ;; table at 16: entry k holds k + 2 for k < 4, then 0 and 1 (below the bias), then 1000
  (data (i32.const 16) "\02\00\00\00\03\00\00\00\04\00\00\00\05\00\00\00\00\00\00\00\01\00\00\00\e8\03\00\00")
  (func (export "dispatch") (param $x i32) (result i32)
    (block $d
      (block $c3
        (block $c2
          (block $c1
            (block $c0
              (br_table $c0 $c1 $c2 $c3 $d
                (i32.add
                  (i32.load offset=16
                    (i32.shl (i32.and (local.get $x) (i32.const 127)) (i32.const 2)))
                  (i32.const -2))))
            (return (i32.const 100)))
          (return (i32.const 101)))
        (return (i32.const 102)))
      (return (i32.const 103)))
    (i32.const 199))
  ;; an index that overflows 32 bits wraps, as the i32.shl and i32.add it replaces
  (func (export "dispatch_far") (param $x i32) (result i32)
    (block $d
      (block $c0
        (br_table $c0 $d
          (i32.add
            (i32.load offset=0
              (i32.add (i32.shl (i32.and (local.get $x) (i32.const -1)) (i32.const 2))
                       (i32.const 16)))
            (i32.const -2))))
      (return (i32.const 100)))
    (i32.const 199))
  ;; out of bounds: a table near the end of memory, and an offset beyond it
  (func (export "dispatch_oob") (param $x i32) (result i32)
    (block $d
      (block $c0
        (br_table $c0 $d
          (i32.add
            (i32.load offset=65532
              (i32.add (i32.shl (i32.and (local.get $x) (i32.const 255)) (i32.const 2))
                       (i32.const 0)))
            (i32.const -2))))
      (return (i32.const 100)))
    (i32.const 199))
  (func (export "and_shl") (param $x i32) (result i32)
    (i32.shl (i32.and (local.get $x) (i32.const 0xff)) (i32.const 35)))
  (func (export "and_shl_add") (param $x i32) (result i32)
    (i32.add (i32.shl (i32.and (local.get $x) (i32.const 127)) (i32.const 2)) (i32.const 16)))
  (func (export "ld_idx") (param $x i32) (result i32)
    (i32.load offset=16 (i32.add (i32.shl (i32.and (local.get $x) (i32.const 127)) (i32.const 2))
                                 (i32.const 0))))
  (func (export "ld_idx_f32") (param $x i32) (result f32)
    (f32.load offset=16 (i32.add (i32.shl (i32.and (local.get $x) (i32.const 127)) (i32.const 2))
                                 (i32.const 0))))
  (func (export "ld_idx_add") (param $x i32) (result i32)
    (i32.add (i32.load offset=16 (i32.add (i32.shl (i32.and (local.get $x) (i32.const 127))
                                                   (i32.const 2))
                                          (i32.const 0)))
             (i32.const -2)))
  (func (export "ld_idx_oob") (param $x i32) (result i32)
    (i32.load offset=4 (i32.add (i32.shl (i32.and (local.get $x) (i32.const -1)) (i32.const 2))
                                (i32.const 65528))))
)
(assert_return (invoke "dispatch" (i32.const 0)) (i32.const 100))
(assert_return (invoke "dispatch" (i32.const 1)) (i32.const 101))
(assert_return (invoke "dispatch" (i32.const 2)) (i32.const 102))
(assert_return (invoke "dispatch" (i32.const 3)) (i32.const 103))
(assert_return (invoke "dispatch" (i32.const 4)) (i32.const 199))
(assert_return (invoke "dispatch" (i32.const 5)) (i32.const 199))
(assert_return (invoke "dispatch" (i32.const 6)) (i32.const 199))
(assert_return (invoke "dispatch" (i32.const 128)) (i32.const 100))
(assert_return (invoke "dispatch" (i32.const 0x83)) (i32.const 103))
(assert_return (invoke "dispatch" (i32.const 127)) (i32.const 199))
(assert_return (invoke "dispatch_far" (i32.const 1)) (i32.const 199))
(assert_return (invoke "dispatch_far" (i32.const 0x40000000)) (i32.const 100))
(assert_return (invoke "dispatch_far" (i32.const 0x3fffffff)) (i32.const 199))
(assert_trap (invoke "dispatch_far" (i32.const 16383)) "out of bounds memory access")
(assert_return (invoke "dispatch_oob" (i32.const 0)) (i32.const 199))
(assert_trap (invoke "dispatch_oob" (i32.const 1)) "out of bounds memory access")
(assert_return (invoke "and_shl" (i32.const 0x1234)) (i32.const 0x1a0))
(assert_return (invoke "and_shl_add" (i32.const 0x85)) (i32.const 36))
(assert_return (invoke "ld_idx" (i32.const 3)) (i32.const 5))
(assert_return (invoke "ld_idx" (i32.const 6)) (i32.const 1000))
(assert_return (invoke "ld_idx_f32" (i32.const 6)) (f32.const 0x1.f4p-140))
(assert_return (invoke "ld_idx_add" (i32.const 5)) (i32.const -1))
(assert_return (invoke "ld_idx_oob" (i32.const 0)) (i32.const 0))
(assert_trap (invoke "ld_idx_oob" (i32.const 1)) "out of bounds memory access")
(assert_return (invoke "ld_idx_oob" (i32.const 0x3ffffffe)) (i32.const 0))
(assert_return (invoke "ld_idx_oob" (i32.const 0x3ffffffc)) (i32.const 0))

;; A tiny VM whose loop starts with the lookup-table switch: the back-edges run the switch
;; themselves (BR_LD). Program bytes from 64, one opcode a byte: 0 add 1, 1 double, 2 halt;
;; the table at 16 maps opcode k to case k + 2.
(module
  (memory 1)
  (data (i32.const 16) "\02\00\00\00\03\00\00\00\04\00\00\00")
  (data (i32.const 64) "\00\00\01\00\01\01\00\02")
  (func (export "vm") (param $pc i32) (result i32)
    (local $acc i32) (local $op i32)
    (local.set $op (i32.load8_u (local.get $pc)))
    (loop $next
      (block $halt
        (block $double
          (block $inc
            (br_table $inc $double $halt $halt
              (i32.add
                (i32.load offset=16
                  (i32.shl (i32.and (local.get $op) (i32.const 127)) (i32.const 2)))
                (i32.const -2))))
          (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
          (local.set $pc (i32.add (local.get $pc) (i32.const 1)))
          (local.set $op (i32.load8_u (local.get $pc)))
          (br $next))
        (local.set $acc (i32.shl (local.get $acc) (i32.const 1)))
        (local.set $pc (i32.add (local.get $pc) (i32.const 1)))
        (local.set $op (i32.load8_u (local.get $pc)))
        (br $next)))
    (local.get $acc))
)
(assert_return (invoke "vm" (i32.const 64)) (i32.const 21))
(assert_return (invoke "vm" (i32.const 70)) (i32.const 1))
(assert_return (invoke "vm" (i32.const 71)) (i32.const 0))
(assert_trap (invoke "vm" (i32.const 65535)) "out of bounds memory access")

;; Pointer chases: a load from the address an i32.load just read (LD32_LD32, LD32_LD8U,
;; LD32_LD64), through a stack value or a local.tee (which must still see the pointer).
(module
  (memory 1)
  ;; at 8: a pointer to 32; at 32: 0x11223344 then 0x55667788; at 12: a pointer near the end
  (data (i32.const 8) "\20\00\00\00\fc\ff\00\00")
  (data (i32.const 32) "\44\33\22\11\88\77\66\55")
  (func (export "chase32") (param $p i32) (result i32)
    (i32.load offset=4 (i32.load offset=8 (local.get $p))))
  (func (export "chase8") (param $p i32) (result i32)
    (i32.load8_u offset=2 (i32.load offset=8 (local.get $p))))
  (func (export "chase8_64") (param $p i32) (result i64)
    (i64.load8_u offset=7 (i32.load offset=8 (local.get $p))))
  (func (export "chase64") (param $p i32) (result i64)
    (i64.load (i32.load offset=8 (local.get $p))))
  (func (export "chase_f64") (param $p i32) (result f64)
    (f64.load (i32.load offset=8 (local.get $p))))
  (func (export "chase_f32") (param $p i32) (result f32)
    (f32.load (i32.load offset=8 (local.get $p))))
  (func (export "chase_tee") (param $p i32) (result i32)
    (local $q i32)
    (i32.add (i32.load (local.tee $q (i32.load offset=8 (local.get $p)))) (local.get $q)))
  (func (export "chase_self") (param $p i32) (result i32)
    (local.set $p (i32.load offset=8 (local.get $p)))
    (i32.load (local.get $p)))
)
(assert_return (invoke "chase32" (i32.const 0)) (i32.const 0x55667788))
(assert_return (invoke "chase8" (i32.const 0)) (i32.const 0x22))
(assert_return (invoke "chase8_64" (i32.const 0)) (i64.const 0x55))
(assert_return (invoke "chase64" (i32.const 0)) (i64.const 0x5566778811223344))
(assert_return (invoke "chase_f64" (i32.const 0)) (f64.const 0x1.6778811223344p+343))
(assert_return (invoke "chase_f32" (i32.const 0)) (f32.const 0x1.446688p-93))
(assert_return (invoke "chase_tee" (i32.const 0)) (i32.const 0x11223364))
(assert_return (invoke "chase_self" (i32.const 0)) (i32.const 0x11223344))
(assert_trap (invoke "chase32" (i32.const 4)) "out of bounds memory access")
(assert_trap (invoke "chase64" (i32.const 4)) "out of bounds memory access")
(assert_return (invoke "chase8" (i32.const 4)) (i32.const 0))
(assert_trap (invoke "chase32" (i32.const 65528)) "out of bounds memory access")
(assert_trap (invoke "chase8" (i32.const -8)) "out of bounds memory access")

;; A switch on a byte just loaded (a type tag) minus a constant (BR_TABLE_L8), the byte on
;; the stack or kept in a local that is read after the switch.
(module
  (memory 1)
  (data (i32.const 0) "\03\03\04\05\02\ff")
  (func (export "tag") (param $p i32) (result i32)
    (block $d
      (block $c1
        (block $c0
          (br_table $c0 $c1 $d (i32.add (i32.load8_u offset=1 (local.get $p)) (i32.const -3))))
        (return (i32.const 100)))
      (return (i32.const 101)))
    (i32.const 199))
  (func (export "tag_kept") (param $p i32) (result i32)
    (local $t i32)
    (block $d
      (block $c0
        (br_table $c0 $d (i32.add (local.tee $t (i32.load8_u (local.get $p))) (i32.const -3))))
      (return (i32.add (local.get $t) (i32.const 1000))))
    (local.get $t))
)
(assert_return (invoke "tag" (i32.const 0)) (i32.const 100))
(assert_return (invoke "tag" (i32.const 1)) (i32.const 101))
(assert_return (invoke "tag" (i32.const 2)) (i32.const 199))
(assert_return (invoke "tag" (i32.const 3)) (i32.const 199))
(assert_return (invoke "tag" (i32.const 4)) (i32.const 199))
(assert_return (invoke "tag" (i32.const 65534)) (i32.const 199))
(assert_trap (invoke "tag" (i32.const 65535)) "out of bounds memory access")
(assert_trap (invoke "tag" (i32.const -1)) "out of bounds memory access")
(assert_return (invoke "tag_kept" (i32.const 0)) (i32.const 1003))
(assert_return (invoke "tag_kept" (i32.const 2)) (i32.const 4))
(assert_return (invoke "tag_kept" (i32.const 5)) (i32.const 255))
(assert_trap (invoke "tag_kept" (i32.const 65536)) "out of bounds memory access")

;; Copies fused into the call or return that follows (COPY_CALL, COPY2_CALL, RET_COPY,
;; RET_COPY2): arguments and results that are locals, swapped, or passed on unchanged.
(module
  (func $sub (param $a i32) (param $b i32) (result i32) (i32.sub (local.get $a) (local.get $b)))
  (func $swap (param $a i32) (param $b i32) (result i32 i32) (local.get $b) (local.get $a))
  (func (export "args") (param $a i32) (param $b i32) (result i32)
    (local $x i32) (local $y i32)
    (local.set $x (local.get $b))
    (local.set $y (local.get $a))
    (call $sub (local.get $x) (local.get $y)))
  (func (export "one_arg") (param $a i32) (result i32)
    (call $sub (local.get $a) (i32.const 1)))
  (func (export "swapped") (param $a i32) (param $b i32) (result i32)
    (call $swap (local.get $a) (local.get $b))
    (call $sub))
  (func (export "pass") (param $a i32) (param $b i32) (result i32 i32)
    (call $swap (local.get $b) (local.get $a)))
  (func $fib (export "fib") (param $n i32) (result i32)
    (local $r i32)
    (if (i32.lt_u (local.get $n) (i32.const 2)) (then (return (local.get $n))))
    (local.set $r (call $fib (i32.sub (local.get $n) (i32.const 1))))
    (local.set $r (i32.add (local.get $r) (call $fib (i32.sub (local.get $n) (i32.const 2)))))
    (local.get $r))
)
(assert_return (invoke "args" (i32.const 10) (i32.const 3)) (i32.const -7))
(assert_return (invoke "one_arg" (i32.const 10)) (i32.const 9))
(assert_return (invoke "swapped" (i32.const 10) (i32.const 3)) (i32.const -7))
(assert_return (invoke "pass" (i32.const 1) (i32.const 2)) (i32.const 1) (i32.const 2))
(assert_return (invoke "fib" (i32.const 20)) (i32.const 6765))

;; A constant stored to a local, then br_if on (i32.eqz x), across a block start
;; (CONST_BR_IF_EQZ): forward, as a loop's back-edge, and on the local just set.
(module
  (func (export "fwd") (param $t i32) (result i32)
    (local $r i32)
    (local.set $r (i32.const 5))
    (block $skip
      (local.set $r (i32.const 7))
      (br_if $skip (i32.eqz (local.get $t)))
      (local.set $r (i32.add (local.get $r) (i32.const 100))))
    (local.get $r))
  (func (export "self") (param $t i32) (result i32)
    (block $skip
      (local.set $t (i32.const 0))
      (br_if $skip (i32.eqz (local.get $t)))
      (return (i32.const 1)))
    (i32.const 2))
  (func (export "count") (param $n i32) (result i32)
    (local $k i32) (local $z i32) (local $stop i32)
    (loop $again
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (local.set $stop (i32.eqz (local.get $n)))
      (local.set $z (i32.const 3))
      (br_if $again (i32.eqz (local.get $stop))))
    (i32.add (local.get $k) (local.get $z)))
)
(assert_return (invoke "fwd" (i32.const 0)) (i32.const 7))
(assert_return (invoke "fwd" (i32.const 1)) (i32.const 107))
(assert_return (invoke "self" (i32.const 1)) (i32.const 2))
(assert_return (invoke "count" (i32.const 5)) (i32.const 8))

;; An i32.add of a constant right before an unconditional br runs in it (ADD_I_BR): forward,
;; wrapping, as a loop's back-edge, leaving a block's result, and at an if's else; after a
;; COPY2 (COPY2_ADD_I_BR, a Lua VM's instruction tail), the add reading a local just copied.
(module
  (func (export "add_br") (param $x i32) (result i32)
    (block $b
      (local.set $x (i32.add (local.get $x) (i32.const 1)))
      (br $b))
    (local.get $x))
  (func (export "add_br_count") (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $l)))
    (local.get $i))
  (func (export "add_br_value") (param $x i32) (result i32)
    (block $b (result i32)
      (br $b (i32.add (local.get $x) (i32.const -3)))))
  (func (export "add_br_else") (param $c i32) (param $x i32) (result i32)
    (if (local.get $c)
      (then (local.set $x (i32.add (local.get $x) (i32.const 10))))
      (else (local.set $x (i32.sub (local.get $x) (i32.const 1)))))
    (local.get $x))
  (func (export "add_br_else_value") (param $c i32) (param $x i32) (result i32)
    (if (result i32) (local.get $c)
      (then (i32.add (local.get $x) (i32.const 10)))
      (else (i32.const 7))))
  (func (export "copy2_add_br") (param $a i32) (param $b i32) (result i32)
    (local $x i32) (local $y i32)
    (block $out
      (local.set $x (local.get $a))
      (local.set $y (local.get $b))
      (local.set $a (i32.add (local.get $x) (i32.const 1)))
      (br $out))
    (i32.add (local.get $a) (i32.mul (local.get $y) (i32.const 1000))))
)
(assert_return (invoke "copy2_add_br" (i32.const 5) (i32.const 7)) (i32.const 7006))
(assert_return (invoke "copy2_add_br" (i32.const -1) (i32.const 2)) (i32.const 2000))
(assert_return (invoke "add_br" (i32.const 41)) (i32.const 42))
(assert_return (invoke "add_br" (i32.const -1)) (i32.const 0))
(assert_return (invoke "add_br_count" (i32.const 7)) (i32.const 8))
(assert_return (invoke "add_br_count" (i32.const 0)) (i32.const 0))
(assert_return (invoke "add_br_value" (i32.const 1)) (i32.const -2))
(assert_return (invoke "add_br_else" (i32.const 1) (i32.const 5)) (i32.const 15))
(assert_return (invoke "add_br_else" (i32.const 0) (i32.const 5)) (i32.const 4))
(assert_return (invoke "add_br_else" (i32.const 1) (i32.const -10)) (i32.const 0))
(assert_return (invoke "add_br_else_value" (i32.const 1) (i32.const -1)) (i32.const 9))
(assert_return (invoke "add_br_else_value" (i32.const 0) (i32.const -1)) (i32.const 7))

;; A VM's instruction fetch before the back-edge to its switch (FETCH_LD): i = mem32[pc],
;; ra = base + ((i >> 7) & 255), then the switch on the table at 16 (opcode k: case k + 2).
;; Words from 64: 0 (acc += ra, arg 5), 1 (acc *= 2), 0 (arg 255), 0 (arg 259: masked to 3),
;; 2 (halt); a base that wraps ra; a fetch beyond the memory's end; and ra on the word itself.
(module
  (memory 1)
  (data (i32.const 16) "\02\00\00\00\03\00\00\00\04\00\00\00")
  (data (i32.const 64) "\80\02\00\00\01\00\00\00\80\7f\00\00\80\81\00\00\02\00\00\00")
  (data (i32.const 65532) "\80\02\00\00")
  (func (export "fetch") (param $pc i32) (param $base i32) (result i32)
    (local $i i32) (local $ra i32) (local $acc i32)
    (local.set $i (i32.load (local.get $pc)))
    (local.set $ra (i32.add (local.get $base)
                            (i32.and (i32.shr_u (local.get $i) (i32.const 7)) (i32.const 255))))
    (loop $next
      (block $fetch
        (block $halt
          (block $double
            (block $add
              (br_table $add $double $halt $halt
                (i32.add
                  (i32.load offset=16
                    (i32.shl (i32.and (local.get $i) (i32.const 127)) (i32.const 2)))
                  (i32.const -2))))
            (local.set $acc (i32.add (local.get $acc) (local.get $ra)))
            (local.set $pc (i32.add (local.get $pc) (i32.const 4)))
            (br $fetch))
          (local.set $acc (i32.shl (local.get $acc) (i32.const 1)))
          (local.set $pc (i32.add (local.get $pc) (i32.const 4)))
          (br $fetch))
        (return (local.get $acc)))
      (local.set $i (i32.load (local.get $pc)))
      (local.set $ra (i32.add (local.get $base)
                              (i32.and (i32.shr_u (local.get $i) (i32.const 7)) (i32.const 255))))
      (br $next))
    (i32.const -1))
  ;; the base is the word just loaded: ra = i + ((i >> 7) & 255), read after the load
  (func (export "fetch_self") (param $pc i32) (result i32)
    (local $i i32) (local $ra i32) (local $n i32)
    (local.set $i (i32.const 0))
    (loop $next
      (block $fetch
        (block $stop
          (block $go
            (br_table $go $go $stop $stop
              (i32.add
                (i32.load offset=16
                  (i32.shl (i32.and (local.get $i) (i32.const 127)) (i32.const 2)))
                (i32.const -2))))
          (br_if $stop (i32.eq (local.get $n) (i32.const 1)))
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br $fetch))
        (return (local.get $ra)))
      (local.set $i (i32.load (local.get $pc)))
      (local.set $ra (i32.add (local.get $i)
                              (i32.and (i32.shr_u (local.get $i) (i32.const 7)) (i32.const 255))))
      (br $next))
    (i32.const -1))
)
(assert_return (invoke "fetch" (i32.const 64) (i32.const 0)) (i32.const 268))
(assert_return (invoke "fetch" (i32.const 64) (i32.const -1)) (i32.const 264))
(assert_return (invoke "fetch" (i32.const 80) (i32.const 0)) (i32.const 0))
(assert_trap (invoke "fetch" (i32.const 65532) (i32.const 0)) "out of bounds memory access")
(assert_return (invoke "fetch_self" (i32.const 64)) (i32.const 0x285))

;; A store of the value a load of the same width just read (MOV32, MOV64, MOV8): the value is
;; copied whole, the store's address may be computed before the load, i64.load32_u with
;; i64.store32 is a 32-bit move, and a source out of bounds traps before anything is stored.
(module
  (memory 1)
  (data (i32.const 0) "\01\02\03\04\05\06\07\08\f1\f2\f3\f4")
  (func (export "mov64") (param $d i32) (param $s i32) (result i64)
    (i64.store (local.get $d) (i64.load (local.get $s)))
    (i64.load (local.get $d)))
  (func (export "mov32") (param $d i32) (param $s i32) (result i32)
    (i32.store offset=4 (i32.add (local.get $d) (i32.const 4)) (i32.load offset=2 (local.get $s)))
    (i32.load offset=8 (local.get $d)))
  (func (export "mov32_64") (param $d i32) (param $s i32) (result i64)
    (i64.store32 (local.get $d) (i64.load32_u (local.get $s)))
    (i64.load (local.get $d)))
  (func (export "mov8") (param $d i32) (param $s i32) (result i32)
    (i32.store8 offset=1 (local.get $d) (i32.load8_u offset=8 (local.get $s)))
    (i32.load (local.get $d)))
  (func (export "peek") (param $a i32) (result i32) (i32.load (local.get $a)))
)
(assert_return (invoke "mov64" (i32.const 100) (i32.const 0)) (i64.const 0x0807060504030201))
(assert_return (invoke "mov64" (i32.const 101) (i32.const 4)) (i64.const 0xf4f3f2f108070605))
(assert_return (invoke "mov32" (i32.const 200) (i32.const 0)) (i32.const 0x06050403))
(assert_return (invoke "mov32_64" (i32.const 300) (i32.const 8)) (i64.const 0xf4f3f2f1))
(assert_return (invoke "mov8" (i32.const 400) (i32.const 1)) (i32.const 0xf200))
(assert_trap (invoke "mov64" (i32.const 500) (i32.const 65529)) "out of bounds memory access")
(assert_return (invoke "peek" (i32.const 500)) (i32.const 0))
(assert_trap (invoke "mov64" (i32.const 65529) (i32.const 0)) "out of bounds memory access")
(assert_trap (invoke "mov8" (i32.const 65535) (i32.const 0)) "out of bounds memory access")
(assert_trap (invoke "mov8" (i32.const 0) (i32.const 65528)) "out of bounds memory access")
(assert_return (invoke "peek" (i32.const 0)) (i32.const 0x04030201))

;; A C function's stack pointer: global.set of an i32.add or i32.sub of a constant just
;; computed (GSET_ADD_I), and of one applied to a global.get of the same global (GADD_I),
;; through a local.tee, into a local, wrapping, and across two different globals.
(module
  (global $sp (mut i32) (i32.const 64))
  (global $other (mut i32) (i32.const 1000))
  (func (export "sp") (result i32) (global.get $sp))
  (func (export "other") (result i32) (global.get $other))
  (func (export "enter") (param $n i32) (result i32)
    (local $frame i32)
    (global.set $sp (local.tee $frame (i32.sub (global.get $sp) (i32.const 16))))
    (local.get $frame))
  (func (export "leave") (param $frame i32)
    (global.set $sp (i32.add (local.get $frame) (i32.const 16))))
  (func (export "enter_old") (result i32)
    (local $old i32)
    (local.set $old (global.get $sp))
    (global.set $sp (i32.sub (local.get $old) (i32.const 8)))
    (i32.sub (local.get $old) (global.get $sp)))
  (func (export "cross") (result i32)
    (global.set $other (i32.add (global.get $sp) (i32.const 1)))
    (global.get $other))
)
(assert_return (invoke "enter" (i32.const 0)) (i32.const 48))
(assert_return (invoke "sp") (i32.const 48))
(assert_return (invoke "leave" (i32.const 48)))
(assert_return (invoke "sp") (i32.const 64))
(assert_return (invoke "enter_old") (i32.const 8))
(assert_return (invoke "sp") (i32.const 56))
(assert_return (invoke "cross") (i32.const 57))
(assert_return (invoke "sp") (i32.const 56))
(assert_return (invoke "leave" (i32.const -4)))
(assert_return (invoke "sp") (i32.const 12))
(assert_return (invoke "enter" (i32.const 0)) (i32.const -4))
(assert_return (invoke "sp") (i32.const -4))
(assert_return (invoke "other") (i32.const 57))

;; Two i32.adds of constants in a row, each stored in a local (ADD_I2): the second reading the
;; first's result, or the local the first one read, and wrapping.
(module
  (func (export "add2_chain") (param $x i32) (result i32)
    (local $a i32) (local $b i32)
    (local.set $a (i32.add (local.get $x) (i32.const 5)))
    (local.set $b (i32.add (local.get $a) (i32.const -1)))
    (i32.add (i32.mul (local.get $a) (i32.const 1000)) (local.get $b)))
  (func (export "add2_same") (param $x i32) (result i32)
    (local $a i32)
    (local.set $a (i32.add (local.get $x) (i32.const 1)))
    (local.set $x (i32.add (local.get $x) (i32.const 2)))
    (i32.add (i32.mul (local.get $a) (i32.const 1000)) (local.get $x)))
)
(assert_return (invoke "add2_chain" (i32.const 1)) (i32.const 6005))
(assert_return (invoke "add2_chain" (i32.const -5)) (i32.const -1))
(assert_return (invoke "add2_chain" (i32.const 0x7ffffffb)) (i32.const 2147483647))
(assert_return (invoke "add2_same" (i32.const 1)) (i32.const 2003))
(assert_return (invoke "add2_same" (i32.const -1)) (i32.const 1))
