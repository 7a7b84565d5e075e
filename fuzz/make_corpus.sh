#!/usr/bin/env bash
# Regenerates the committed seed corpora in fuzz/corpus/<target>/ from the readable
# descriptions below. Run it after changing them; the outputs are committed so a fresh
# clone replays them without protoc. Each file is a hand-picked starting point for the
# fuzzer: the valid shapes of each input plus the edge cases the decoders branch on.
set -euo pipefail
cd "$(dirname "$0")"
proto_dir=../proto
corpus=corpus

address=EdrS8WH2A6bgGzdFPCKs1n2Z7cHbyC8Gcy  # the daemon's vector (test/test_address.cpp)

# protoc's text format in, wire bytes out.
encode() { protoc --proto_path="$proto_dir" --encode="ensemble.api.$1" ensemble.proto; }
# Bytes as a text-format string literal (\xNN each), for a payload field.
escaped() { od -An -v -tx1 | tr -d ' \n' | sed 's/../\\x&/g'; }
put() { mkdir -p "$corpus/$1"; cat >"$corpus/$1/$2"; }
# Hex text in, raw bytes out.
unhex() { printf "$(sed 's/../\\x&/g')"; }

rm -rf "$corpus"

# ---- service_message: ServiceServerMessage wire bytes ----
event() {  # event NAME TYPE PAYLOAD_MESSAGE PAYLOAD_TEXT
  local payload
  payload=$(printf '%s' "$4" | encode "$3" | escaped)
  printf 'event { type: "%s" payload: "%s" }' "$2" "$payload" | encode ServiceServerMessage | put service_message "$1"
}
event chat chat_message ServiceChatMessageEvent "from_addr: \"$address\" text: \"hello\" ts: 1700000000000"
event chat_negative_ts chat_message ServiceChatMessageEvent "from_addr: \"$address\" text: \"x\" ts: -9223372036854775808"
event connection_request connection_request ServiceConnectionRequestEvent "request_id: \"req-1\" from_addr: \"$address\""
event rpc rpc_message ServiceRpcMessageEvent "from_addr: \"$address\" payload: \"\\x00\\x01\\xff\" ts: 1"
event peer_introduction peer_introduction ServicePeerIntroductionEvent \
  "from_service_addr: \"$address\" peer_addr: \"$address\" session_id: \"s\" expires_at_ms: 1700000060000 role_hint: \"buyer\" payload: \"p\""
event unknown_type presence_update ServiceChatMessageEvent "text: \"a newer daemon's event\""
printf 'event { type: "chat_message" payload: "\\xff\\xff\\xff" }' | encode ServiceServerMessage | put service_message chat_bad_payload
printf 'registered { address: "%s" onion: "abc.onion" }' "$address" | encode ServiceServerMessage | put service_message registered
printf 'error { message: "too big" code: "payload_too_large" limit_bytes: 65536 from_addr: "%s" }' "$address" |
  encode ServiceServerMessage | put service_message error_payload_too_large
printf 'error { message: "slow down" code: "rate_limited" retry_after_ms: 1500 }' | encode ServiceServerMessage |
  put service_message error_rate_limited
printf 'error { message: "plain" }' | encode ServiceServerMessage | put service_message error_plain
printf '' | put service_message empty
# Found by the fuzzer: messages concatenate, so a second oneof member replaces the first
# (the reactor sees only the event); and field 1 with the wrong wire type is an unknown
# field, which leaves no member set at all.
{
  printf 'registered { address: "%s" onion: "abc.onion" }' "$address" | encode ServiceServerMessage
  printf 'event { type: "rpc_message" payload: "" }' | encode ServiceServerMessage
} | put service_message oneof_last_wins
printf '\x08\x04' | put service_message wrong_wire_type
printf 'error { message: "m" code: "rate_limited" retry_after_ms: -1 }' | encode ServiceServerMessage |
  put service_message error_rate_limited_negative

# ---- daemon_chat: Subscribe chat_message payload text (JSON, or not) ----
chat() { printf '%s' "$2" | put daemon_chat "$1"; }
chat go_keys '{"ID":"m1","From":"'$address'","To":"'$address'","Text":"hi","SentAt":"2024-05-01T12:00:00.123456789+02:00","AckedAt":"0001-01-01T00:00:00Z","Direction":"incoming"}'
chat snake_case '{"id":"m2","from_addr":"'$address'","to_addr":"x","text":"hi","ts":1700000000000,"acked_at":1700000000500.5,"direction":"outgoing"}'
chat short_keys '{"from":"a","to":"b","text":"t","sent_at":"2024-02-29t23:59:60z"}'
chat missing_text '{"From":"a","Text":""}'
chat wrong_types '{"From":1,"Text":["x"],"SentAt":{},"AckedAt":true}'
chat null_values '{"From":null,"from":"a","Text":"t","SentAt":null}'
chat file_offer '{"TransferID":"t1","From":"a","Filename":"f.txt","Size":18446744073709551615}'
chat not_json 'plain text, not JSON'
chat array '[1,2,{"From":"a"}]'
chat deep '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'
chat huge_numbers '{"From":"a","Text":"t","SentAt":1e308,"AckedAt":-9223372036854775808}'
# RFC 3339 edges the fuzzer reached: fraction past milliseconds, numeric offsets, a space
# for the T, a leap second; then dates that do not exist and an empty fraction.
chat rfc3339_offsets '{"From":"a","Text":"t","SentAt":"2024-12-31T23:59:59.9999999999-23:59","AckedAt":"9999-12-31 23:59:60+23:59"}'
chat rfc3339_invalid '{"From":"a","Text":"t","SentAt":"2023-02-29T00:00:00Z","AckedAt":"2024-01-01T00:00:00.Z"}'
chat file_offer_snake '{"transfer_id":"t2","from":"a","filename":"x","size":-1}'
chat truncated_array '[-7'

# ---- seed_file: seed file contents ----
seed_hex=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
printf '%s\n' "$seed_hex" | put seed_file hex_newline
printf '  \t%s \r\n\n' "${seed_hex^^}" | put seed_file hex_upper_spaces
printf '%s' "$seed_hex" | unhex | put seed_file raw32
printf '%s' "${seed_hex:0:63}" | put seed_file hex63
printf '%sz\n' "${seed_hex:0:63}" | put seed_file hex_not_digit
printf ' \n\t' | put seed_file whitespace
printf '' | put seed_file empty
head -c 4097 /dev/zero | tr '\0' 'a' | put seed_file too_big
# The largest file read: a hex seed padded to exactly 4096 bytes is a seed. Regression: it
# was refused as "more than 4096 bytes" (the read buffer had no room to tell it from a file
# that grew after fstat). One byte more and it is over the limit, seed or not.
{ printf '%s' "$seed_hex"; head -c 4032 /dev/zero | tr '\0' ' '; } | put seed_file hex_padded_4096
{ printf '%s' "$seed_hex"; head -c 4033 /dev/zero | tr '\0' ' '; } | put seed_file hex_padded_4097
printf 'A ' | put seed_file hex_short_with_space
printf '\v\f\r\n' | put seed_file whitespace_vt_ff

# ---- address: candidate address strings ----
addr() { printf '%s' "$2" | put address "$1"; }
addr valid "$address"
addr bad_checksum "${address%?}z"
addr bad_char "${address:0:10}0${address:11}"
addr leading_ones "111111$address"
addr empty ''
addr control_bytes $'E\x01\x7f"\\\n'
# Lengths around is_valid_address's bound on the quadratic decode (256 characters): longer than an address but
# accepted for decoding, at the bound, one past it; and nothing but leading zeros.
addr long_base58 EdrS8WH2A6bgGzdFPCKs1n2Z7cHdrS8WH2A6bgGzdFPCKs1bC8Gcz
addr ones_256 "$(printf '1%.0s' {1..256})"
addr ones_257 "$(printf '1%.0s' {1..257})"
addr only_ones 11
printf '%s' 03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8 | unhex | put address public_key32
