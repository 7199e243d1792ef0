//go:build race

package main

// raceEnabled: the tests were built with -race (see buildPeerbridge).
const raceEnabled = true
