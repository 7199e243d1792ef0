# peerbridge's least-privilege Consul ACL policy. A template: <owner> is
# PEERBRIDGE_OWNER (default peerbridge), <service> a service name it
# publishes. Fill it in and make the token (bridge/consulpub/README.md, "Consul with ACLs"):
#   sed -e 's/<owner>/peerbridge/g' -e 's/<service>/myapp/g' deploy/consul/policy.hcl > peerbridge-policy.hcl
#   consul acl policy create -name peerbridge -rules @peerbridge-policy.hcl
#   consul acl token create -description peerbridge -policy-name peerbridge
# With several topologies, repeat the service rule once per service name.

# The external node of every peer: <owner>-<service>-<peer>.
node_prefix "<owner>-" {
  policy = "write"
}

# Each published service, registered on those nodes, and read back to
# compute what changed.
service "<service>" {
  policy = "write"
}

# PEERBRIDGE_HA only, from here on. Each replica registers itself on its
# local agent as the service "peerbridge" with a TTL check, which its
# session is bound to.
service "peerbridge" {
  policy = "write"
}

# The replica's session, created on its local agent's node (whose name
# the policy cannot know).
session_prefix "" {
  policy = "write"
}

# The leader lock (PEERBRIDGE_HA_KEY_PREFIX/<owner>, default
# peerbridge/leader/<owner>) and the leader's stamp below it.
key_prefix "peerbridge/leader/<owner>" {
  policy = "write"
}
