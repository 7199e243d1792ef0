package ec2

import "github.com/peerbridge/peerbridge/providers/internal/awsapi"

// EC2's error codes, as its API reference lists them, by what they mean
// for the loop.
var (
	throttleCodes = map[string]bool{
		"RequestLimitExceeded": true, "Throttling": true, "ThrottlingException": true,
		"RequestThrottled": true, "TooManyRequestsException": true,
	}
	credentialCodes = map[string]bool{
		"AuthFailure": true, "UnauthorizedOperation": true, "InvalidClientTokenId": true,
		"SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidAccessKeyId": true,
		"OptInRequired": true,
	}
	serverCodes = map[string]bool{
		"InternalError": true, "InternalFailure": true, "Unavailable": true, "ServiceUnavailable": true,
	}
)

// ec2Codes are EC2's codes as awsapi.Classify reads them.
var ec2Codes = awsapi.Codes{
	Throttle: throttleCodes, Credentials: credentialCodes, Server: serverCodes,
	Permissions: "ec2:DescribeInstances",
}

// classify sorts a DescribeInstances error for the loop (awsapi.Classify):
// throttling is a rate limit (EC2 sends no Retry-After, so the loop's
// backoff decides); rejected credentials or permissions wait for an
// operator; server faults, answers that do not parse and requests that
// got no answer are transient; anything else (a filter EC2 rejects) is a
// plain error.
func classify(err error) error { return awsapi.Classify(err, ec2Codes) }
