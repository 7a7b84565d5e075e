/// @file
/// Umbrella header: the whole public API of ensemble-cpp. The daemon double is separate
/// (<ensemble/testing/daemon_double.hpp>): it is for tests and demos, not for bots.
#pragma once

#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/chat_service.hpp>
#include <ensemble/client.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/connectivity.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/events.hpp>
#include <ensemble/file_transfer.hpp>
#include <ensemble/log.hpp>
#include <ensemble/node_events.hpp>
#include <ensemble/node_states.hpp>
#include <ensemble/node_types.hpp>
#include <ensemble/result.hpp>
#include <ensemble/rpc_service.hpp>
#include <ensemble/service.hpp>
#include <ensemble/service_options.hpp>
#include <ensemble/signals.hpp>
#include <ensemble/spawn.hpp>
#include <ensemble/text.hpp>
#include <ensemble/thread_pool.hpp>
#include <ensemble/version.hpp>
