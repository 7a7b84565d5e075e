/// @file
/// Compiling the service reactor and the Client once per program instead of once per file.
///
/// The library is header-only: every translation unit that starts a service compiles the
/// whole reactor (reconnects, signing, the write queue, the wire checks), a few seconds of
/// CPU each, and the linker keeps one copy. A program with many such files may instead:
///
///   1. define ENSEMBLE_SEPARATE_COMPILATION for every file that includes the library
///      (Meson: cpp_args; CMake: target_compile_definitions), which declares the reactor
///      and the Client `extern template` so those files only call them, and
///   2. include this header in exactly one of its .cpp files, which compiles them there.
///
/// Nothing else changes: the same headers, types and behaviour, and no library to link
/// besides the usual ones. Forgetting step 2 is a link error naming
/// ensemble::BasicService<void> or ensemble::BasicClient<void>; doing step 2 without
/// step 1 is a compile error here.
/// README, "What it costs to compile", has the figures (bench/compile_cost.sh).
#pragma once

#if !defined(ENSEMBLE_SEPARATE_COMPILATION)
#error "<ensemble/separate_compilation.hpp> needs ENSEMBLE_SEPARATE_COMPILATION defined in every file of the program that includes the library"
#endif

#include <ensemble/ensemble.hpp>

namespace ensemble {
template class BasicService<void>;
template class BasicClient<void>;
}  // namespace ensemble
