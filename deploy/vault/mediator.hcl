# Policy "mediator": what the mediator service's own token may do, and nothing
# more. The token is obtained by AppRole login (role "mediator"). Later
# features add paths here as they need them, each with its reason.

# Keep its own token alive and learn its own policies.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Sign audit checkpoints with the Transit ed25519 key, and read its public
# half to publish the verifier key. The private key is not exportable.
path "mediator-transit/sign/mediator-checkpoint" {
  capabilities = ["update"]
}

path "mediator-transit/keys/mediator-checkpoint" {
  capabilities = ["read"]
}

# Load the pseudonymization HMAC key (cached in memory, never stored or
# logged). Rotation is an operator's action, not the service's.
path "mediator-transit/export/hmac-key/mediator-pseudonym/*" {
  capabilities = ["read"]
}

# Escrow: wrap, unwrap and rewrap shares with the custodian keys. The keys
# are derived (per conversation and key id) and never exportable.
path "mediator-transit/encrypt/custodian-*" {
  capabilities = ["update"]
}

path "mediator-transit/decrypt/custodian-*" {
  capabilities = ["update"]
}

path "mediator-transit/rewrap/custodian-*" {
  capabilities = ["update"]
}

# Shares are written once: "create" without "update", so Vault itself
# refuses a write over an existing share (and every write uses cas=0).
path "mediator-kv/data/shares/*" {
  capabilities = ["create", "read"]
}

# Destruction at retention end removes every version of a share.
path "mediator-kv/metadata/shares/*" {
  capabilities = ["delete"]
}
