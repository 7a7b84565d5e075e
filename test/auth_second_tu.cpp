// A second translation unit that includes the auth, address, spawn and auth-check headers
// and calls into them: a definition missing `inline` becomes a duplicate-symbol link error
// in test_auth at once, instead of in a user's project.
#include <ensemble/address.hpp>
#include <ensemble/auth.hpp>
#include <ensemble/detail/base58.hpp>
#include <ensemble/detail/hex.hpp>
#include <ensemble/spawn.hpp>
#include <ensemble/testing/auth_check.hpp>

#include <string>

std::string second_tu_address_of_generated_seed() {
  const ensemble::Signer signer(ensemble::Seed::generate());
  const auto metadata = std::multimap<grpc::string_ref, grpc::string_ref>{};
  (void)ensemble::testing::check_admin_auth(metadata, signer.public_key());
  (void)ensemble::SpawnContext::from_env().supervised();
  (void)ensemble::is_onion_address("");
  return ensemble::address_from_public_key(signer.public_key());
}
