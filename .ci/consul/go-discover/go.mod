// Stands in for github.com/hashicorp/go-discover in the Consul that the
// tests run (see ../go.mod's replace): the same API, no cloud providers.
module github.com/hashicorp/go-discover

go 1.26
