# The ACL policy peerbridge's nomad provider needs: read-job lets it read
# service registrations (/v1/service/<name> and /v1/services), nothing
# else. One namespace block per namespace it reads; with
# PEERBRIDGE_NOMAD_NAMESPACE=* a block for each namespace it should see
# (or namespace "*").
#
#   nomad acl policy apply -namespace default -job peerbridge \
#     peerbridge-read peerbridge-read.policy.hcl      (workload identity)
#   nomad acl policy apply peerbridge-read peerbridge-read.policy.hcl
#   nomad acl token create -name peerbridge -policy peerbridge-read
namespace "default" {
  capabilities = ["read-job"]
}
