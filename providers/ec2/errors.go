package ec2

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

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

// classify sorts a DescribeInstances error for the loop: throttling is a
// rate limit (EC2 sends no Retry-After, so the loop's backoff decides);
// rejected credentials or permissions wait for an operator; server
// faults, answers that do not parse and requests that got no answer
// (connection refused, reset) are transient. A cancelled context passes
// through, and so does the poll's deadline, which the loop counts as a
// timeout. Anything else (a filter EC2 rejects) is a plain error.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch {
		case throttleCodes[code]:
			return &platform.RateLimited{Err: err}
		case credentialCodes[code]:
			return fmt.Errorf("%w (%s), check the AWS credentials and that they allow ec2:DescribeInstances: %w",
				bridge.ErrCredentials, code, err)
		case serverCodes[code]:
			return platform.Transient(err)
		}
	}
	var de *smithy.DeserializationError
	switch {
	case status == http.StatusTooManyRequests:
		return &platform.RateLimited{Err: err}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d): %w", bridge.ErrCredentials, status, err)
	case status >= 500, status == http.StatusRequestTimeout:
		return platform.Transient(err)
	case errors.As(err, &de):
		return platform.Transient(err)
	case status == 0:
		// No answer at all: connection refused or reset, DNS, TLS, or a
		// credential provider (IMDS, STS) that did not answer.
		return platform.Transient(err)
	}
	return err
}
