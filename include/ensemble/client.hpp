/// @file
/// Client: one connection to one daemon. It makes services (one RegisterService stream each,
/// any number on the one channel) and makes the node-level calls.
///
/// Two identities can send a message, and picking the wrong one is the usual reason a peer
/// refuses a dial:
///   - the operator (node) identity: Client::connect / Client::send / Client::send_file,
///     with replies on Client::events(). The peer sees the daemon's own node address
///     (get_identity()). Use it when the peer admits the operator, e.g. an allowlist that
///     lists the operator's address, or a contact list the operator is on.
///   - a service identity: Service::connect_peer / Service::send_message on a registered
///     service, with replies on that service's on_chat(). The peer sees the service's
///     address. Use it when the peer admits that service, or when the conversation belongs
///     to the bot rather than to the person running the daemon.
///
/// Lifetime: destroying a Client cancels its open streams and calls, waits until they have
/// ended and their user callbacks have been destroyed, and then releases the channel on the
/// destroying thread (on a gRPC callback thread, i.e. inside a handler, it cancels without
/// waiting). Services you still hold stay valid objects afterwards: their actions and
/// start() throw ServiceClosedError, connect_peer() throws RpcError CANCELLED.
#pragma once

#include <ensemble/auth.hpp>
#include <ensemble/chat_service.hpp>
#include <ensemble/client_options.hpp>
#include <ensemble/detail/callback_thread.hpp>
#include <ensemble/detail/channel.hpp>
#include <ensemble/detail/connection.hpp>
#include <ensemble/detail/deadline.hpp>
#include <ensemble/detail/failure.hpp>
#include <ensemble/detail/node_conversions.hpp>
#include <ensemble/detail/open_events.hpp>
#include <ensemble/detail/unary.hpp>
#include <ensemble/errors.hpp>
#include <ensemble/file_transfer.hpp>
#include <ensemble/node_events.hpp>
#include <ensemble/node_types.hpp>
#include <ensemble/result.hpp>
#include <ensemble/rpc_service.hpp>
#include <ensemble/service_options.hpp>
#include <ensemble/spawn.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ensemble {

/// Users name it Client; like Service, it is a class template with the one instantiation
/// BasicClient<void> only so that a program may compile it once: see
/// <ensemble/separate_compilation.hpp>.
template <class Unused>
class BasicClient {
 public:
  /// Throws ConfigError for contradictory options (both or neither of socket_path/addr, tls
  /// on a Unix socket, a signed plaintext call to a non-loopback host) and for values gRPC
  /// would misread or reject: a socket_path over the kernel's limit (107 bytes on Linux) or in
  /// a "unix:" form that is not a path, an addr that is not "host:port" / "[v6]:port", a
  /// service_token that is not printable ASCII, channel_args that set what the library sets
  /// itself, a null interceptor factory. The message names the option and never holds the
  /// token. Does no I/O: the channel connects on first use.
  explicit BasicClient(ClientOptions options) {
    std::shared_ptr<const Signer> signer;
    if (options.auth_seed) signer = std::make_shared<const Signer>(*options.auth_seed);
    std::shared_ptr<detail::ConnectivityMonitor> connectivity;
    if (options.on_connectivity) {
      connectivity = std::make_shared<detail::ConnectivityMonitor>(std::move(options.on_connectivity));
    }
    // Separate statements: check_options checks the token, so it must run before the token
    // is moved out (the order of evaluating one call's arguments is unspecified).
    detail::CheckedTarget target = detail::check_options(options);
    auto channel = detail::make_channel(options, target, std::move(signer), connectivity);
    conn_ = detail::make_connection(std::move(channel), std::move(options.service_token),
                                    options.max_message_bytes, std::move(target.socket_file));
    conn_->connectivity = std::move(connectivity);
  }

  /// The client for the environment the process was started in (daemon-protocol.md §8):
  ///   ENSEMBLE_SERVICE_TOKEN set -> supervised: dial ENSEMBLE_SOCKET, present the token on
  ///                                 RegisterService, no seed;
  ///   otherwise                  -> dial ENSEMBLE_SOCKET, signing every call with the seed
  ///                                 file named by ENSEMBLE_AUTH_SEED when it is set.
  /// Throws ConfigError naming ENSEMBLE_SOCKET when it is missing, and naming the variable for
  /// a value the constructor above would refuse or one with surrounding whitespace (refused,
  /// not trimmed); AuthError naming ENSEMBLE_AUTH_SEED and the file when the seed cannot be
  /// used.
  static BasicClient from_env() { return BasicClient(options_from(SpawnContext::from_env())); }

  /// The options from_env uses, with the same checks, for a SpawnContext from anywhere.
  static ClientOptions options_from(const SpawnContext& env) {
    if (!env.socket_path) {
      throw ConfigError(
          "ENSEMBLE_SOCKET is not set: it must name the daemon's Unix socket (the daemon's "
          "supervisor sets it for services it spawns)");
    }
    // Checked here too, so that the message names the variable rather than the option.
    detail::check_env_surroundings("ENSEMBLE_SOCKET", *env.socket_path, false);
    detail::socket_file(*env.socket_path, "ENSEMBLE_SOCKET");
    ClientOptions options;
    options.socket_path = *env.socket_path;
    if (env.service_token) {
      detail::check_env_surroundings("ENSEMBLE_SERVICE_TOKEN", *env.service_token, true);
      detail::check_service_token("ENSEMBLE_SERVICE_TOKEN", *env.service_token);
      options.service_token = *env.service_token;
    } else if (env.auth_seed_path) {
      detail::check_env_surroundings("ENSEMBLE_AUTH_SEED", *env.auth_seed_path, false);
      try {
        options.auth_seed = Seed::from_file(*env.auth_seed_path);
      } catch (const AuthError& e) {
        throw AuthError(std::string("ENSEMBLE_AUTH_SEED: ") + e.what());
      }
    }
    return options;
  }

  /// Takes over the connection; the moved-from Client must only be destroyed or assigned to.
  BasicClient(BasicClient&&) noexcept = default;
  /// Ends this Client as ~BasicClient does, then takes over the connection of `other`.
  BasicClient& operator=(BasicClient&& other) noexcept {
    if (this != &other) {
      shut_down();
      conn_ = std::move(other.conn_);
    }
    return *this;
  }
  BasicClient(const BasicClient&) = delete;
  BasicClient& operator=(const BasicClient&) = delete;

  ~BasicClient() { shut_down(); }

  // ---- Services. Install handlers on the result, then start() it. ----

  /// A chat service named `name` on this Client's connection, not started: install its
  /// handlers, then start() it. ServiceOptions says what the manifest declares and how it
  /// reconnects. Nothing is sent until start().
  std::shared_ptr<ChatService> service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<ChatService>(detail::ServiceKey{}, connection(), std::move(name),
                                             std::move(options));
  }
  /// As service(), for a service of the RPC transport (raw bytes: RpcService::on_rpc,
  /// send_bytes).
  std::shared_ptr<RpcService> rpc_service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<RpcService>(detail::ServiceKey{}, connection(), std::move(name),
                                            std::move(options));
  }
  /// As service(), for a service on the HTTP transport (HttpService; the daemon serves those
  /// itself).
  std::shared_ptr<HttpService> http_service(std::string name, ServiceOptions options = {}) {
    return detail::make_service<HttpService>(detail::ServiceKey{}, connection(), std::move(name),
                                             std::move(options));
  }

  // ---- Node-level calls, as the operator identity ----

  /// Dials a peer as the OPERATOR (the daemon's node identity): the peer's gate sees the
  /// node address, not any service's. Pick this when the peer admits the operator; to dial
  /// as a registered service (the peer admits the bot), use Service::connect_peer. A refused
  /// or impossible dial is accepted == false with the daemon's reason ("connected" on
  /// success); RpcError only when the call itself fails. Throws AddressError for an invalid
  /// address before anything is sent.
  ConnectResult connect(std::string address, CallOptions options = {}) {
    return detail::blocking_call<api::ConnectResponse>(
        *connection(), "Connect", connect_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.Connect(ctx, req, resp); },
        detail::to_connect_result);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void connect(std::string address, std::function<void(Result<ConnectResult>)> callback,
               CallOptions options = {}) {
    detail::callback_call<api::ConnectResponse>(
        connection(), "Connect", connect_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->Connect(ctx, req, resp, std::move(done));
        },
        detail::to_connect_result, std::move(callback));
  }

  /// Sends a chat as the OPERATOR (see connect() for when to pick which identity); returns
  /// the daemon's message id. Replies, and the node's own echo of this message, arrive on
  /// events() as chat_message events. RpcError INTERNAL "sending message: <cause>" when the
  /// daemon could not deliver it.
  std::string send(std::string address, std::string text, CallOptions options = {}) {
    return detail::blocking_call<api::SendMessageResponse>(
        *connection(), "SendMessage", send_request(std::move(address), std::move(text)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.SendMessage(ctx, req, resp); },
        to_message_id);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void send(std::string address, std::string text, std::function<void(Result<std::string>)> callback,
            CallOptions options = {}) {
    detail::callback_call<api::SendMessageResponse>(
        connection(), "SendMessage", send_request(std::move(address), std::move(text)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->SendMessage(ctx, req, resp, std::move(done));
        },
        to_message_id, std::move(callback));
  }

  // ---- Node-level calls: identity, status, contacts, connection requests, files, ----
  // ---- discovery, debug. Added with the node event stream and file transfer.      ----
  //
  // Each unary call comes in two forms with the same arguments: blocking (returns the value
  // or throws RpcError carrying the daemon's status code and message) and callback (returns
  // at once; the callback runs exactly once on a gRPC thread with a Result holding the
  // value or that same RpcError). Arguments are checked first, so bad input throws
  // (AddressError, InvalidArgumentError) from both forms before anything is sent.
  // CallOptions{.timeout} sets a deadline (DEADLINE_EXCEEDED past it). Any thread; a
  // pending callback call is cancelled (CANCELLED) when the Client is destroyed.

  /// The node's own (operator) identity: the address peers see for connect/send/send_file.
  NodeIdentity get_identity(CallOptions options = {}) {
    return detail::blocking_call<api::GetIdentityResponse>(
        *connection(), "GetIdentity", api::GetIdentityRequest{}, options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.GetIdentity(ctx, req, resp); },
        detail::to_node_identity);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void get_identity(std::function<void(Result<NodeIdentity>)> callback, CallOptions options = {}) {
    detail::callback_call<api::GetIdentityResponse>(
        connection(), "GetIdentity", api::GetIdentityRequest{}, options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->GetIdentity(ctx, req, resp, std::move(done));
        },
        detail::to_node_identity, std::move(callback));
  }

  /// The node's status: Tor's state, the peer count, the onion address, the uptime and the
  /// routing table's size (NodeStatus). wait_until_ready() polls it.
  NodeStatus get_status(CallOptions options = {}) {
    return detail::blocking_call<api::GetStatusResponse>(
        *connection(), "GetStatus", api::GetStatusRequest{}, options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.GetStatus(ctx, req, resp); },
        detail::to_node_status);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void get_status(std::function<void(Result<NodeStatus>)> callback, CallOptions options = {}) {
    detail::callback_call<api::GetStatusResponse>(
        connection(), "GetStatus", api::GetStatusRequest{}, options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->GetStatus(ctx, req, resp, std::move(done));
        },
        detail::to_node_status, std::move(callback));
  }

  /// Blocks until the daemon reports itself ready: GetStatus tor_state "ready", which is
  /// when Tor has bootstrapped and RegisterService works (the daemon's tor_ready event
  /// marks the same moment). Polls GetStatus with a backoff of 100 ms doubling to 2 s,
  /// through a daemon that is not there yet (UNAVAILABLE) or still "bootstrapping"; when the
  /// next pause would pass the deadline, it pauses until the deadline and asks once more
  /// (that poll gets 100 ms), so it never gives up before `timeout` has passed. Why it is still waiting goes to the
  /// log sink (log.hpp) when it starts, when the reason changes and after 10, 100, ...
  /// polls. Returns that status. Throws RpcError: DEADLINE_EXCEEDED when `timeout` passes
  /// first (zero, or one too long for the clock such as milliseconds::max(): no limit;
  /// negative: ConfigError),
  /// FAILED_PRECONDITION when tor_state is "disabled" (Tor failed to start, so the registry
  /// never comes up), UNAVAILABLE with the cause at once when waiting cannot help (the
  /// socket path is not a socket or this user may not open it; the TLS handshake fails), or
  /// the status of any other failed call (auth, ...). For a service,
  /// ServiceOptions::wait_for_daemon does the same waiting inside start().
  NodeStatus wait_until_ready(std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    using clock = std::chrono::steady_clock;
    using std::chrono::milliseconds;
    if (timeout.count() < 0) {
      throw ConfigError("Client::wait_until_ready: timeout is negative (" + std::to_string(timeout.count()) +
                        " ms); use 0 for no limit");
    }
    const auto deadline = timeout.count() > 0 ? detail::deadline_after<clock>(timeout) : std::nullopt;
    // Each poll may take what is left of `timeout`, and at least this: enough for the last
    // one, made at the deadline, to connect and be answered.
    constexpr milliseconds kPollAtLeast(100);
    milliseconds delay(100);
    bool last_poll = false;
    std::string last = "no answer yet";
    detail::RetryNotes notes;
    for (int attempt = 1;; ++attempt) {
      CallOptions call;
      if (deadline) {
        call.timeout = std::max(kPollAtLeast, std::chrono::ceil<milliseconds>(*deadline - clock::now()));
      }
      // Connect at once rather than after the channel's own backoff (up to 2 s), so that a
      // daemon that has just come up is seen by this poll.
      grpc::experimental::ChannelResetConnectionBackoff(connection()->channel.get());
      try {
        NodeStatus status = get_status(call);
        if (status.tor_state == "ready") return status;
        if (status.tor_state == "disabled") {
          throw RpcError("GetStatus", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                                   "tor_state \"disabled\": Tor failed to start, so the daemon's "
                                                   "service registry will not come up"));
        }
        last = "tor_state " + detail::go_quote(status.tor_state);
      } catch (const RpcError& e) {
        if (e.code() != grpc::StatusCode::UNAVAILABLE && e.code() != grpc::StatusCode::DEADLINE_EXCEEDED) throw;
        const detail::FailureCause cause = detail::classify_failure(e.status(), conn_->socket_file);
        if (cause.permanent) throw RpcError("GetStatus", detail::with_cause(e.status(), cause));
        last = cause.why;
      }
      if (auto line = notes.note("Client::wait_until_ready", "waiting for the daemon: " + last, attempt)) {
        detail::log(LogLevel::warning, *line, {.call = "GetStatus"});
      }
      if (deadline) {
        const auto now = clock::now();
        if (last_poll || now >= *deadline) {
          throw RpcError("GetStatus", grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                                   "the daemon was not ready within " + std::to_string(timeout.count()) +
                                                       " ms (last: " + last + ")"));
        }
        if (now + delay >= *deadline) {
          // The next pause would pass the deadline: pause until it, and ask once more.
          std::this_thread::sleep_until(*deadline);
          last_poll = true;
          continue;
        }
      }
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, milliseconds(2000));
    }
  }

  /// The node's contact list, in the daemon's order.
  std::vector<Contact> list_contacts(CallOptions options = {}) {
    return detail::blocking_call<api::ListContactsResponse>(
        *connection(), "ListContacts", api::ListContactsRequest{}, options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.ListContacts(ctx, req, resp); },
        detail::to_contacts);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void list_contacts(std::function<void(Result<std::vector<Contact>>)> callback, CallOptions options = {}) {
    detail::callback_call<api::ListContactsResponse>(
        connection(), "ListContacts", api::ListContactsRequest{}, options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->ListContacts(ctx, req, resp, std::move(done));
        },
        detail::to_contacts, std::move(callback));
  }

  /// Adds (or, for a known address, overwrites the alias and key of) a contact. Contacts
  /// pass a CONTACTS-ACL gate and the node's own dial gate without a prompt. RpcError
  /// FAILED_PRECONDITION "contacts not initialized" on a daemon without a contact store.
  void add_contact(NewContact contact, CallOptions options = {}) {
    detail::blocking_call<api::AddContactResponse>(
        *connection(), "AddContact", add_contact_request(std::move(contact)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.AddContact(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void add_contact(NewContact contact, std::function<void(Result<Done>)> callback, CallOptions options = {}) {
    detail::callback_call<api::AddContactResponse>(
        connection(), "AddContact", add_contact_request(std::move(contact)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->AddContact(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Removing an address that is not a contact succeeds and changes nothing.
  void remove_contact(std::string address, CallOptions options = {}) {
    detail::blocking_call<api::RemoveContactResponse>(
        *connection(), "RemoveContact", remove_contact_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.RemoveContact(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void remove_contact(std::string address, std::function<void(Result<Done>)> callback,
                      CallOptions options = {}) {
    detail::callback_call<api::RemoveContactResponse>(
        connection(), "RemoveContact", remove_contact_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->RemoveContact(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Answers a peer's dial to the OPERATOR (a connection_request node event whose payload
  /// is the peer's address). Operator level, keyed by address; a registered service answers
  /// its own requests with Service::accept_connection(request_id). RpcError NOT_FOUND
  /// "no pending request from <address>" when nothing from that address is waiting.
  void accept_connection(std::string address, CallOptions options = {}) {
    detail::blocking_call<api::AcceptConnectionResponse>(
        *connection(), "AcceptConnection", accept_connection_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.AcceptConnection(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void accept_connection(std::string address, std::function<void(Result<Done>)> callback,
                         CallOptions options = {}) {
    detail::callback_call<api::AcceptConnectionResponse>(
        connection(), "AcceptConnection", accept_connection_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->AcceptConnection(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Refuses a peer's dial to the OPERATOR, the counterpart of accept_connection() with the
  /// same errors.
  void reject_connection(std::string address, CallOptions options = {}) {
    detail::blocking_call<api::RejectConnectionResponse>(
        *connection(), "RejectConnection", reject_connection_request(std::move(address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.RejectConnection(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void reject_connection(std::string address, std::function<void(Result<Done>)> callback,
                         CallOptions options = {}) {
    detail::callback_call<api::RejectConnectionResponse>(
        connection(), "RejectConnection", reject_connection_request(std::move(address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->RejectConnection(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Sends a file as the OPERATOR, following the daemon's TransferProgress stream (see
  /// file_transfer.hpp). file_path is opened by the daemon, on the daemon's machine.
  /// Blocking form: on_progress runs on THIS thread for each report, in order; returns the
  /// final report (complete == true) or throws RpcError (the call failed: INTERNAL
  /// "sending file: <cause>", CANCELLED, DEADLINE_EXCEEDED, ...) or FileTransferError (the
  /// daemon reported a failed or unfinished transfer). Do not call it from a handler.
  FileProgress send_file(std::string address, std::string file_path,
                         std::function<void(const FileProgress&)> on_progress = {}, CallOptions options = {}) {
    return detail::send_file_blocking(connection(), detail::send_file_request(std::move(address), std::move(file_path)),
                                      std::move(on_progress), options);
  }
  /// Callback form: on_progress and on_done run on gRPC threads; on_done gets what the
  /// blocking form would return or throw. The transfer lives as long as the returned handle:
  /// releasing it cancels the transfer (hence [[nodiscard]]).
  [[nodiscard]] std::shared_ptr<FileTransfer> send_file(std::string address, std::string file_path,
                                                        std::function<void(const FileProgress&)> on_progress,
                                                        std::function<void(Result<FileProgress>)> on_done,
                                                        CallOptions options = {}) {
    return detail::open_file_transfer(connection(),
                                      detail::send_file_request(std::move(address), std::move(file_path)),
                                      std::move(on_progress), std::move(on_done), options);
  }

  /// Answers a file offer made to the operator (a file_offer node event; decode it with
  /// DaemonFileOffer::from_event). save_dir is the directory the daemon saves into, on the
  /// daemon's machine; empty means the daemon's default. The daemon's error (e.g. no such
  /// pending transfer) arrives as RpcError.
  void accept_file(std::string transfer_id, std::string save_dir, CallOptions options = {}) {
    detail::blocking_call<api::AcceptFileResponse>(
        *connection(), "AcceptFile", accept_file_request(std::move(transfer_id), std::move(save_dir)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.AcceptFile(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void accept_file(std::string transfer_id, std::string save_dir, std::function<void(Result<Done>)> callback,
                   CallOptions options = {}) {
    detail::callback_call<api::AcceptFileResponse>(
        connection(), "AcceptFile", accept_file_request(std::move(transfer_id), std::move(save_dir)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->AcceptFile(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Declines a file offer made to the operator (the transfer_id of its file_offer node event).
  /// The daemon's error (e.g. no such pending transfer) arrives as RpcError.
  void reject_file(std::string transfer_id, CallOptions options = {}) {
    detail::blocking_call<api::RejectFileResponse>(
        *connection(), "RejectFile", reject_file_request(std::move(transfer_id)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.RejectFile(ctx, req, resp); },
        to_done);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void reject_file(std::string transfer_id, std::function<void(Result<Done>)> callback, CallOptions options = {}) {
    detail::callback_call<api::RejectFileResponse>(
        connection(), "RejectFile", reject_file_request(std::move(transfer_id)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->RejectFile(ctx, req, resp, std::move(done));
        },
        to_done, std::move(callback));
  }

  /// Bootstraps discovery from a known node's onion address; returns how many peers were
  /// found. The daemon checks the address's form (the daemon double wants
  /// "<56 base32>.onion").
  int add_node(std::string onion_address, CallOptions options = {}) {
    return detail::blocking_call<api::AddNodeResponse>(
        *connection(), "AddNode", add_node_request(std::move(onion_address)), options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.AddNode(ctx, req, resp); },
        to_peers_found);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void add_node(std::string onion_address, std::function<void(Result<int>)> callback, CallOptions options = {}) {
    detail::callback_call<api::AddNodeResponse>(
        connection(), "AddNode", add_node_request(std::move(onion_address)), options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->AddNode(ctx, req, resp, std::move(done));
        },
        to_peers_found, std::move(callback));
  }

  /// The daemon's view of the network, for diagnostics: its DHT routing table and the peers
  /// it is connected to (DebugInfo).
  DebugInfo get_debug_info(CallOptions options = {}) {
    return detail::blocking_call<api::GetDebugInfoResponse>(
        *connection(), "GetDebugInfo", api::GetDebugInfoRequest{}, options,
        [](auto& stub, auto* ctx, const auto& req, auto* resp) { return stub.GetDebugInfo(ctx, req, resp); },
        detail::to_debug_info);
  }
  /// The callback form: returns at once; `callback` runs once, on a gRPC thread, with what the
  /// blocking form above returns or throws.
  void get_debug_info(std::function<void(Result<DebugInfo>)> callback, CallOptions options = {}) {
    detail::callback_call<api::GetDebugInfoResponse>(
        connection(), "GetDebugInfo", api::GetDebugInfoRequest{}, options,
        [](auto* async, auto* ctx, auto* req, auto* resp, auto done) {
          async->GetDebugInfo(ctx, req, resp, std::move(done));
        },
        detail::to_debug_info, std::move(callback));
  }

  /// The node event stream (Subscribe; see node_events.hpp): on_event gets every event of
  /// the node, as the operator sees them (chats to and from the operator, connection
  /// requests, file offers, presence, ...); on_end gets the final status once. Both run on
  /// gRPC threads. The subscription lives as long as the returned handle: releasing it
  /// cancels and waits (hence [[nodiscard]]). CallOptions{.timeout} bounds its whole life.
  [[nodiscard]] std::shared_ptr<EventSubscription> events(std::function<void(const DaemonEvent&)> on_event,
                                                          std::function<void(const grpc::Status&)> on_end = {},
                                                          CallOptions options = {}) {
    return detail::open_events(connection(), std::move(on_event), std::move(on_end), options);
  }

  /// Streams and calls currently open on this client (services count while registered or
  /// reconnecting).
  std::size_t open_calls() const { return conn_ ? conn_->calls.size() : 0; }

 private:
  const std::shared_ptr<detail::Connection>& connection() const {
    if (!conn_) throw Error("this Client was moved from");
    return conn_;
  }

  void shut_down() {
    if (!conn_) return;
    conn_->shut_down();
    conn_.reset();
  }

  static api::ConnectRequest connect_request(std::string address) {
    require_valid_address(address, "connect address");
    api::ConnectRequest request;
    request.set_address(std::move(address));
    return request;
  }
  static api::SendMessageRequest send_request(std::string address, std::string text) {
    require_valid_address(address, "send address");
    if (text.empty()) throw InvalidArgumentError("send: text is empty");
    api::SendMessageRequest request;
    request.set_address(std::move(address));
    request.set_text(std::move(text));
    return request;
  }
  static std::string to_message_id(api::SendMessageResponse r) {
    return std::move(*r.mutable_message_id());
  }

  // ---- node-level calls: request builders (they check arguments) and converters ----
  // A named function, not a lambda held in a static member: GCC gives such a lambda's
  // type internal linkage and then emits every call instantiated with it in every TU,
  // used or not (six unary calls' worth of code in a bot that makes none).
  static Done to_done(const google::protobuf::Message& /*response*/) { return {}; }
  static int to_peers_found(api::AddNodeResponse r) { return r.peers_found(); }

  static api::AddContactRequest add_contact_request(NewContact contact) {
    require_valid_address(contact.address, "add_contact address");
    api::AddContactRequest request;
    request.set_address(std::move(contact.address));
    request.set_alias(std::move(contact.alias));
    request.set_public_key(detail::from_public_key(contact.public_key));
    return request;
  }
  static api::RemoveContactRequest remove_contact_request(std::string address) {
    require_valid_address(address, "remove_contact address");
    api::RemoveContactRequest request;
    request.set_address(std::move(address));
    return request;
  }
  static api::AcceptConnectionRequest accept_connection_request(std::string address) {
    require_valid_address(address, "accept_connection address");
    api::AcceptConnectionRequest request;
    request.set_address(std::move(address));
    return request;
  }
  static api::RejectConnectionRequest reject_connection_request(std::string address) {
    require_valid_address(address, "reject_connection address");
    api::RejectConnectionRequest request;
    request.set_address(std::move(address));
    return request;
  }
  static api::AcceptFileRequest accept_file_request(std::string transfer_id, std::string save_dir) {
    if (transfer_id.empty()) throw InvalidArgumentError("accept_file: transfer_id is empty");
    api::AcceptFileRequest request;
    request.set_transfer_id(std::move(transfer_id));
    request.set_save_path(std::move(save_dir));
    return request;
  }
  static api::RejectFileRequest reject_file_request(std::string transfer_id) {
    if (transfer_id.empty()) throw InvalidArgumentError("reject_file: transfer_id is empty");
    api::RejectFileRequest request;
    request.set_transfer_id(std::move(transfer_id));
    return request;
  }
  static api::AddNodeRequest add_node_request(std::string onion_address) {
    if (onion_address.empty()) throw InvalidArgumentError("add_node: onion_address is empty");
    api::AddNodeRequest request;
    request.set_onion_address(std::move(onion_address));
    return request;
  }

  std::shared_ptr<detail::Connection> conn_;
};

#if defined(ENSEMBLE_SEPARATE_COMPILATION)
/// Compiled once, in the file that includes <ensemble/separate_compilation.hpp>.
extern template class BasicClient<void>;
#endif

}  // namespace ensemble
