# Run by `cmake --install` (install(SCRIPT) in systemd/CMakeLists.txt) after the sysusers.d
# entry is in place: create the pinpool group that pinpoold.socket's SocketGroup= names.
# Only for an install to the live system — as root and without DESTDIR; a staged install
# (packaging) or a non-root one is told the command instead, because creating groups
# belongs to the machine that will run the units.  PP_SYSUSERS_FILE and
# PP_INSTALL_SYSUSERS are set by the install(CODE) just before this script.
set(pp_cmd "systemd-sysusers ${PP_SYSUSERS_FILE}")
execute_process(COMMAND id -u OUTPUT_VARIABLE pp_uid OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT PP_INSTALL_SYSUSERS)
  message(STATUS "pinpool: PP_INSTALL_SYSUSERS=OFF; create the group with: ${pp_cmd}")
elseif(NOT "$ENV{DESTDIR}" STREQUAL "")
  message(STATUS "pinpool: staged install (DESTDIR); on the target system run: ${pp_cmd}")
elseif(NOT pp_uid STREQUAL "0")
  message(STATUS "pinpool: not root; create the pinpool group as root with: ${pp_cmd}")
else()
  find_program(PP_SYSUSERS_EXE systemd-sysusers)
  if(NOT PP_SYSUSERS_EXE)
    message(WARNING "pinpool: systemd-sysusers not found; create the group with "
                    "`groupadd --system pinpool`")
  else()
    execute_process(COMMAND ${PP_SYSUSERS_EXE} ${PP_SYSUSERS_FILE} RESULT_VARIABLE pp_rc)
    if(NOT pp_rc EQUAL 0)
      message(FATAL_ERROR "pinpool: `${pp_cmd}` failed (${pp_rc})")
    endif()
    message(STATUS "pinpool: ${pp_cmd}: group pinpool is present")
  endif()
endif()
