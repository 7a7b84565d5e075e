// The generated schema matches the daemon's wire contract: the numbers that matter to a real
// daemon are checked through protobuf's own descriptors, not by reading our .proto back.
#include <catch2/catch.hpp>

#include <ensemble/proto/ensemble.grpc.pb.h>

namespace api = ensemble::api;

static int field_number(const google::protobuf::Descriptor* d, const char* name) {
  const auto* f = d->FindFieldByName(name);
  REQUIRE(f != nullptr);
  return f->number();
}

TEST_CASE("published fields keep the daemon's numbers") {
  CHECK(field_number(api::ServiceManifest::descriptor(), "keypair_seed") == 5);
  CHECK(field_number(api::ServiceClientMessage::descriptor(), "reject") == 4);
  CHECK(field_number(api::ServiceServerMessage::descriptor(), "error") == 3);
  CHECK(field_number(api::ContactInfo::descriptor(), "online") == 7);
  CHECK(field_number(api::TransferProgress::descriptor(), "error") == 7);
  CHECK(field_number(api::GetStatusResponse::descriptor(), "rt_size") == 5);
  CHECK(api::ACL_ALLOWLIST == 2);
}

TEST_CASE("extensions sit at 16 and above") {
  CHECK(field_number(api::ServiceManifest::descriptor(), "transport") == 16);
  CHECK(field_number(api::ServiceManifest::descriptor(), "rate_limit_burst") == 19);
  CHECK(field_number(api::ServiceClientMessage::descriptor(), "send_bytes") == 16);
  CHECK(field_number(api::ServiceClientMessage::descriptor(), "introduce_peers") == 17);
  CHECK(field_number(api::ServiceError::descriptor(), "code") == 16);
  CHECK(field_number(api::ServiceError::descriptor(), "from_addr") == 19);
  CHECK(api::TRANSPORT_HTTP == 2);
}

TEST_CASE("service methods have the daemon's full names") {
  const auto* svc = api::EnsembleService::service_full_name();
  CHECK(std::string(svc) == "ensemble.api.EnsembleService");
  const auto* file = api::ServiceManifest::descriptor()->file();
  const auto* service = file->FindServiceByName("EnsembleService");
  REQUIRE(service != nullptr);
  CHECK(service->method_count() == 17);
  const auto* reg = service->FindMethodByName("RegisterService");
  REQUIRE(reg != nullptr);
  CHECK(reg->client_streaming());
  CHECK(reg->server_streaming());
}
