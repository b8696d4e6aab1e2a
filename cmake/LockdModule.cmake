# lockd_module(<name> DEPS <targets...> [PRIVATE_DEPS <targets...>])
#
# One library target per module directory, built from every .cc in it: lockd_<name>. DEPS are the
# module's public dependencies, so the dependency graph between modules is written down once, here
# in each module's CMakeLists.txt, and CMake refuses cycles.
function(lockd_module name)
  cmake_parse_arguments(M "" "" "DEPS;PRIVATE_DEPS" ${ARGN})
  # Files ending in _main.cc hold an executable's main() and are not part of the library.
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  list(FILTER sources EXCLUDE REGEX "_main\\.cc$")
  if(NOT sources)  # a header-only module
    add_library(lockd_${name} INTERFACE)
    target_include_directories(lockd_${name} INTERFACE ${PROJECT_SOURCE_DIR}/src
                                                       ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(lockd_${name} INTERFACE ${M_DEPS})
    return()
  endif()
  add_library(lockd_${name} STATIC ${sources})
  target_include_directories(lockd_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src
                                                  ${PROJECT_SOURCE_DIR}/include)
  target_link_libraries(lockd_${name} PUBLIC ${M_DEPS} PRIVATE ${M_PRIVATE_DEPS} lockd_warnings)
endfunction()
