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
