# A Vault server for deploy/compose.yaml: data in a file backend on its own
# volume, survives restarts, sealed at each start until
# deploy/compose/vault-unseal.sh unseals it. Plain HTTP on the compose
# network only; in production use TLS, and raft or your storage of choice.
storage "file" {
  path = "/vault/file"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

disable_mlock = true
api_addr      = "http://127.0.0.1:8200"
ui            = false
