# peerbridge as a Nomad service job: three replicas on three hosts, which
# elect a leader through the local Consul agent; the leader polls and
# writes, every replica answers DNS. On the static provider here; for
# droplets set PEERBRIDGE_PROVIDER=droplet and render the token from Vault
# into a file (DIGITALOCEAN_TOKEN_FILE).
job "peerbridge" {
  type = "service"

  group "peerbridge" {
    count = 3

    # Static ports: one replica per host.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "dns" { static = 8653 }
      port "http" { static = 8654 }
    }

    service {
      name = "peerbridge"
      port = "http"
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
      # every client with docker load; Docker pulls it only when missing.
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

      env {
        PEERBRIDGE_SERVICE       = "myapp"
        PEERBRIDGE_PORT          = "4369"
        PEERBRIDGE_NODE_BASENAME = "myapp"
        PEERBRIDGE_STATIC_PEERS  = "node1=10.0.0.1,node2=10.0.0.2"
        PEERBRIDGE_LOG_FORMAT    = "json"
        PEERBRIDGE_HA            = "true"
        PEERBRIDGE_STATE_FILE    = "/var/lib/peerbridge/state.json"
        CONSUL_HTTP_ADDR         = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
