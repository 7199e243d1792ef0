module github.com/peerbridge/peerbridge

go 1.26.8

require (
	github.com/digitalocean/godo v1.236.0
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/miekg/dns v1.1.72
	golang.org/x/sync v0.24.0
)

require (
	github.com/google/go-querystring v1.1.0 // indirect
	github.com/hashicorp/go-cleanhttp v0.5.2 // indirect
	github.com/hashicorp/go-retryablehttp v0.7.7 // indirect
	golang.org/x/mod v0.31.0 // indirect
	golang.org/x/net v0.48.0 // indirect
	golang.org/x/oauth2 v0.27.0 // indirect
	golang.org/x/sys v0.39.0 // indirect
	golang.org/x/time v0.6.0 // indirect
	golang.org/x/tools v0.40.0 // indirect
)
