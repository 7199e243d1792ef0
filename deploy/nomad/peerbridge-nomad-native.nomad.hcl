# peerbridge giving DNS to a Nomad-native service: every allocation of
# job "myapp" that registers
#
#   service {
#     name     = "myapp"
#     provider = "nomad"
#     port     = "epmd"
#   }
#
# answers as myapp.peers.internal (A/AAAA) and in SRV with its own port,
# no Consul anywhere. Each replica reads Nomad by itself, with blocking
# queries, so a new allocation is in DNS within moments.
#
# Access: the task's workload identity through the Task API socket
# (Nomad 1.5 and later), with the read-job policy attached to this job:
#
#   nomad acl policy apply -namespace default -job peerbridge \
#     peerbridge-read deploy/nomad/peerbridge-read.policy.hcl
#
# Without workload identities, give it an ACL token instead: see the
# commented template block below.
job "peerbridge" {
  type = "service"

  group "peerbridge" {
    count = 2

    # Static DNS port: one replica per host.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "dns" { static = 8653 }
      port "http" { static = 8654 }
    }

    service {
      name     = "peerbridge"
      provider = "nomad"
      port     = "http"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "peerbridge" {
      driver = "docker"

      # A pinned tag (see the Dockerfile), from your registry or loaded on
      # every client with docker load.
      config {
        image = "peerbridge:0.1.0"
        ports = ["dns", "http"]
        # The last published peer sets (PEERBRIDGE_STATE_FILE), on a
        # Docker volume of the host that outlives the allocation.
        mount {
          type   = "volume"
          target = "/var/lib/peerbridge"
          source = "peerbridge-state"
        }
      }

      # The workload identity's token in NOMAD_TOKEN; it is good for the
      # Task API socket in the secrets directory, which needs no address,
      # TLS or firewall rule.
      identity {
        env = true
      }

      env {
        PEERBRIDGE_STATE_FILE    = "/var/lib/peerbridge/state.json"
        PEERBRIDGE_PROVIDER      = "nomad"
        PEERBRIDGE_SERVICE       = "myapp"
        PEERBRIDGE_NOMAD_SERVICE = "myapp"
        # PEERBRIDGE_NOMAD_TAGS      = "cluster"
        # PEERBRIDGE_NOMAD_NAMESPACE = "*"
        # The full listing behind the blocking queries.
        PEERBRIDGE_POLL_INTERVAL = "30s"
        PEERBRIDGE_NODE_BASENAME = "myapp"
        PEERBRIDGE_CONSUL        = "false"
        PEERBRIDGE_LOG_FORMAT    = "json"
        NOMAD_ADDR               = "unix://${NOMAD_SECRETS_DIR}/api.sock"
      }

      # With an ACL token instead of the workload identity: remove the
      # identity block and NOMAD_ADDR above, store the token of a policy
      # like peerbridge-read.policy.hcl in a Nomad variable
      # (nomad var put nomad/jobs/peerbridge token=<secret id>), and render
      # it into the secrets directory, which is never in the image or the
      # job's env:
      #
      # template {
      #   data        = "{{ with nomadVar \"nomad/jobs/peerbridge\" }}{{ .token }}{{ end }}"
      #   destination = "${NOMAD_SECRETS_DIR}/nomad-token"
      #   perms       = "0400"
      #   change_mode = "restart"
      # }
      # env {
      #   NOMAD_ADDR       = "https://${attr.unique.network.ip-address}:4646"
      #   NOMAD_TOKEN_FILE = "${NOMAD_SECRETS_DIR}/nomad-token"
      #   NOMAD_CACERT     = "/local/nomad-ca.pem"
      # }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
