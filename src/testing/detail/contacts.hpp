// The node's contact store: AddContact / RemoveContact / ListContacts, and the list the
// CONTACTS ACL consults. Kept in `<data_dir>/contacts.json` when a data directory is set,
// so contacts survive a restart as the real daemon's do.
#pragma once

#include <ensemble/detail/hex.hpp>

#include "util.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ensemble::testing::detail {

struct Contact {
  std::string address;
  std::string alias;
  std::string public_key;  // raw bytes, as given
  std::string onion;
  std::int64_t added_at_ms = 0;
  std::int64_t last_seen_ms = 0;
};

class ContactStore {
 public:
  explicit ContactStore(std::filesystem::path data_dir)
      : file_(data_dir.empty() ? std::filesystem::path() : data_dir / "contacts.json") {
    load();
  }

  // Re-adding an address overwrites alias and key (section 5a) but keeps added_at.
  void add(const std::string& address, const std::string& alias, const std::string& key,
           std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    auto& c = contacts_[address];
    if (c.address.empty()) c.added_at_ms = now_ms;
    c.address = address;
    c.alias = alias;
    c.public_key = key;
    save_locked();
  }

  bool remove(const std::string& address) {
    std::lock_guard lock(mu_);
    const bool removed = contacts_.erase(address) > 0;
    if (removed) save_locked();
    return removed;
  }

  bool contains(const std::string& address) const {
    std::lock_guard lock(mu_);
    return contacts_.count(address) > 0;
  }

  void touch(const std::string& address, std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    if (auto it = contacts_.find(address); it != contacts_.end()) it->second.last_seen_ms = now_ms;
  }

  std::vector<Contact> list() const {
    std::lock_guard lock(mu_);
    std::vector<Contact> out;
    for (const auto& [_, c] : contacts_) out.push_back(c);
    return out;
  }

 private:
  void load() {
    if (file_.empty()) return;
    // A damaged file starts a fresh store, as the daemon does ("contacts: fresh store"); an
    // entry of the wrong shape is skipped, a field of the wrong shape read as empty.
    const auto doc = read_json_file(file_);
    if (!doc || !doc->is_array()) return;
    for (const auto& j : *doc) {
      if (!j.is_object()) continue;
      Contact c;
      c.address = json_string_or(j, "address", "");
      if (c.address.empty()) continue;
      c.alias = json_string_or(j, "alias", "");
      if (auto key = ensemble::detail::hex_decode(json_string_or(j, "public_key", ""))) {
        c.public_key.assign(key->begin(), key->end());
      }
      c.onion = json_string_or(j, "onion_address", "");
      c.added_at_ms = json_int_or(j, "added_at", 0);
      c.last_seen_ms = json_int_or(j, "last_seen", 0);
      contacts_[c.address] = std::move(c);
    }
  }

  void save_locked() const {
    if (file_.empty()) return;
    nlohmann::json doc = nlohmann::json::array();
    for (const auto& [_, c] : contacts_) {
      doc.push_back({{"address", c.address},
                     {"alias", c.alias},
                     {"public_key", ensemble::detail::hex_encode(std::span(
                                        reinterpret_cast<const std::uint8_t*>(c.public_key.data()),
                                        c.public_key.size()))},
                     {"onion_address", c.onion},
                     {"added_at", c.added_at_ms},
                     {"last_seen", c.last_seen_ms}});
    }
    const auto tmp = file_.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << doc.dump(2) << '\n';
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file_, ec);
  }

  std::filesystem::path file_;
  mutable std::mutex mu_;
  std::map<std::string, Contact> contacts_;
};

}  // namespace ensemble::testing::detail
