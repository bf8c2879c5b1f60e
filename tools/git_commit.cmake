# Run at every build (the vq_git_commit target): writes OUT with the source tree's
# `git describe --always --dirty`, only when it changed, so a new commit re-stamps bench.c's JSON
# (a value fixed at configure time went stale after the first commit) without recompiling more.
execute_process(COMMAND git -C ${SRC} describe --always --dirty
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
set(text "#define VQ_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
