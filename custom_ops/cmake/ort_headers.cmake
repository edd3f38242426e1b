# Where onnxruntime's C/C++ headers come from, in this order:
#   1. ORT_INCLUDE_DIR (cache variable or environment variable)
#   2. the system (libonnxruntime-dev on Debian 13+ and recent Ubuntu)
#   3. downloaded into the build folder by fetch_ort_headers.sh
set(_SIT_ORT_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")
function(sit_find_ort_headers out_var)
  if(NOT ORT_INCLUDE_DIR AND DEFINED ENV{ORT_INCLUDE_DIR})
    set(ORT_INCLUDE_DIR "$ENV{ORT_INCLUDE_DIR}")
  endif()
  if(ORT_INCLUDE_DIR)
    if(NOT EXISTS "${ORT_INCLUDE_DIR}/onnxruntime_cxx_api.h")
      message(FATAL_ERROR "ORT_INCLUDE_DIR=${ORT_INCLUDE_DIR} holds no onnxruntime_cxx_api.h")
    endif()
    set(${out_var} "${ORT_INCLUDE_DIR}" PARENT_SCOPE)
    return()
  endif()
  find_path(_ort_system onnxruntime_cxx_api.h PATH_SUFFIXES onnxruntime onnxruntime/core/session
            PATHS /usr/include /usr/local/include NO_CACHE)
  if(_ort_system)
    message(STATUS "onnxruntime headers: ${_ort_system} (system)")
    set(${out_var} "${_ort_system}" PARENT_SCOPE)
    return()
  endif()
  set(_dest "${CMAKE_BINARY_DIR}/ort-headers")
  if(NOT EXISTS "${_dest}/include/onnxruntime_cxx_api.h")
    message(STATUS "onnxruntime headers: not on this system, fetching them into ${_dest}")
    execute_process(COMMAND bash "${_SIT_ORT_CMAKE_DIR}/fetch_ort_headers.sh" "${_dest}"
                    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "Cannot find onnxruntime's C/C++ headers (the onnxruntime wheel ships none). "
                          "Install libonnxruntime-dev (Debian 13+, Ubuntu 24.04+), or unpack an official "
                          "onnxruntime release archive and set ORT_INCLUDE_DIR to its include/ folder.\n"
                          "The automatic download failed: ${_err}")
    endif()
  endif()
  message(STATUS "onnxruntime headers: ${_dest}/include (fetched)")
  set(${out_var} "${_dest}/include" PARENT_SCOPE)
endfunction()
