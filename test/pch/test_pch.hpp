// The suite's precompiled header (test/meson.build): what nearly every test file includes,
// parsed once for the whole of test_ensemble. Meson puts it in front of each file with
// -include; every file still includes what it uses, so it builds without the header too.
#include <catch2/catch.hpp>

#include <ensemble/ensemble.hpp>
#include <ensemble/testing/daemon_double.hpp>

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
