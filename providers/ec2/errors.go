package ec2

import "github.com/peerbridge/peerbridge/providers/internal/awsapi"

// classify sorts a DescribeInstances error for the loop (awsapi.Classify
// with EC2's codes): throttling is a rate limit (EC2 sends no
// Retry-After, so the loop's backoff decides); rejected credentials or
// permissions wait for an operator; server faults, answers that do not
// parse and requests that got no answer are transient; anything else (a
// filter EC2 rejects) is a plain error.
func classify(err error) error { return awsapi.Classify(err, awsapi.EC2Codes) }
