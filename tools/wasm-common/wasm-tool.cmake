# gate_wasm_tool(<name> <source>): compile a C tool with clang --target=wasm32-wasi (Debian:
# clang, lld, wasi-libc, libclang-rt-14-dev-wasm32) into ${GATE_TOOLS_OUT}/<name>.wasm.
# The toolchain is probed once; without it the tools are skipped with a message.
if(NOT DEFINED GATE_WASI_CC_OK)
  find_program(GATE_WASI_CLANG NAMES clang clang-14)
  set(GATE_WASI_CC_OK FALSE CACHE INTERNAL "")
  if(GATE_WASI_CLANG)
    set(probe ${CMAKE_BINARY_DIR}/wasi-probe.c)
    file(WRITE ${probe} "#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")
    execute_process(COMMAND ${GATE_WASI_CLANG} --target=wasm32-wasi -O2 -o ${CMAKE_BINARY_DIR}/wasi-probe.wasm ${probe}
                    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE probe_err)
    if(rc EQUAL 0)
      set(GATE_WASI_CC_OK TRUE CACHE INTERNAL "")
    else()
      message(STATUS "wasm tools: clang --target=wasm32-wasi cannot link (${probe_err})")
    endif()
  endif()
  if(NOT GATE_WASI_CC_OK)
    message(STATUS "wasm tools: skipped; install clang, lld, wasi-libc and libclang-rt-14-dev-wasm32")
  endif()
endif()

function(gate_wasm_tool name src)
  if(NOT GATE_WASI_CC_OK)
    return()
  endif()
  set(out ${GATE_TOOLS_OUT}/${name}.wasm)
  add_custom_command(OUTPUT ${out}
    COMMAND ${GATE_WASI_CLANG} --target=wasm32-wasi -O2 -Wall -Wextra -Werror -o ${out} ${src}
    DEPENDS ${src} ${CMAKE_CURRENT_LIST_DIR}/../wasm-common/jscan.h
    COMMENT "wasm32-wasi: ${name}.wasm")
  add_custom_target(tool-${name} ALL DEPENDS ${out})
endfunction()
