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

# No pseudonymization key: identifiers arrive as pseudonyms from a service
# another organisation runs (docs/pseudonyms.md). The HMAC-era Transit key
# "mediator-pseudonym", if a deployment still has it, is not readable here.

# Nothing of escrow: the mediator holds no key that wraps a share, no right
# to read one, and no custodian's credentials. Each custodian has its own
# policy (custodian-<name>, deploy/vault/custodian.go) for its own Transit
# key and KV prefix.
