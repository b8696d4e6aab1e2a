# lockd_add_test(NAME <target> LABEL <unit|sim|e2e|crash|faults> SOURCES ... LIBS ...)
#
# One GoogleTest binary, every test in it registered with CTest under LABEL. Tests are discovered
# when ctest runs (not at build time), so a sanitizer build does not run binaries while linking.
# ONE_PROCESS registers the whole binary as one CTest test instead (for a shared fixture).
# Timing-sensitive labels (e2e, crash, faults) share one RESOURCE_LOCK so they never run side by
# side on a small machine, even under `ctest -j`.
include(GoogleTest)

set(LOCKD_TSAN_SUPPRESSIONS ${PROJECT_SOURCE_DIR}/tests/tsan.supp)
set(LOCKD_TEST_ENV
    "TSAN_OPTIONS=suppressions=${LOCKD_TSAN_SUPPRESSIONS}:halt_on_error=1:second_deadlock_stack=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0")

function(lockd_add_test)
  cmake_parse_arguments(T "ONE_PROCESS" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest_main GTest::gmock lockd_warnings)
  set(props LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${LOCKD_TEST_ENV}")
  if(T_LABEL STREQUAL "e2e" OR T_LABEL STREQUAL "crash" OR T_LABEL STREQUAL "faults")
    list(APPEND props RESOURCE_LOCK lockd_timing)
  endif()
  if(T_ONE_PROCESS)
    # A suite whose tests share one fixture (one cluster started in SetUpTestSuite) runs as one
    # CTest test: per-test processes would start that fixture once per test.
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
    set_tests_properties(${T_NAME} PROPERTIES ${props})
  else()
    gtest_discover_tests(${T_NAME} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                         PROPERTIES ${props})
  endif()
  set_property(GLOBAL APPEND PROPERTY LOCKD_TESTS_${T_LABEL} ${T_NAME})
endfunction()

# tests_<label>: builds only the test binaries of one label (CI's sanitizer builds need no
# daemon, benchmark or other label's binaries). Called once, after every test is declared.
function(lockd_label_targets)
  foreach(label unit sim e2e crash faults)
    get_property(targets GLOBAL PROPERTY LOCKD_TESTS_${label})
    add_custom_target(tests_${label})
    if(targets)
      add_dependencies(tests_${label} ${targets})
    endif()
  endforeach()
endfunction()
