package awsapi

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

// Codes are one AWS API's error codes, by what they mean for the loop.
type Codes struct {
	// Throttle codes are rate limits: the loop backs off (AWS sends no
	// Retry-After).
	Throttle map[string]bool
	// Credential codes are rejected credentials or missing permissions:
	// nothing changes until an operator acts.
	Credentials map[string]bool
	// Server codes are the service's own faults: transient.
	Server map[string]bool
	// Permissions names the actions the credentials need, for the
	// message of a credentials failure (ec2:DescribeInstances).
	Permissions string
}

// Classify sorts an SDK error for the loop. The error code decides
// first, whatever the HTTP status (JSON protocols such as ECS's send
// throttling and access errors as 400): throttling is a rate limit;
// rejected credentials or permissions are bridge.ErrCredentials; server
// faults are transient. Then the status: 429 is a rate limit, 401 and 403
// credentials, 408 and 5xx transient. Answers that do not parse and
// requests that got no answer (connection refused, reset) are transient.
// A cancelled context passes through, and so does the poll's deadline,
// which the loop counts as a timeout. Anything else (a parameter the API
// rejects) is a plain error.
func Classify(err error, codes Codes) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
		case codes.Throttle[code]:
			return &platform.RateLimited{Err: err}
		case codes.Credentials[code]:
			return fmt.Errorf("%w (%s), check the AWS credentials and that they allow %s: %w",
				bridge.ErrCredentials, code, codes.Permissions, err)
		case codes.Server[code]:
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
	case errors.As(err, &de), errors.As(err, new(*platform.TooLargeError)):
		return platform.Transient(err)
	case status == 0:
		// No answer at all: connection refused or reset, DNS, TLS, or a
		// credential provider (IMDS, STS, the ECS agent) that did not
		// answer.
		return platform.Transient(err)
	}
	return err
}

// EC2Codes are EC2's error codes, as its API reference lists them, for
// DescribeInstances (the ec2 provider's listing, and the ecs provider's
// look-up of its container instances' addresses).
var EC2Codes = Codes{
	Throttle: map[string]bool{
		"RequestLimitExceeded": true, "Throttling": true, "ThrottlingException": true,
		"RequestThrottled": true, "TooManyRequestsException": true,
	},
	Credentials: map[string]bool{
		"AuthFailure": true, "UnauthorizedOperation": true, "InvalidClientTokenId": true,
		"SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidAccessKeyId": true,
		"OptInRequired": true,
	},
	Server: map[string]bool{
		"InternalError": true, "InternalFailure": true, "Unavailable": true, "ServiceUnavailable": true,
	},
	Permissions: "ec2:DescribeInstances",
}

// ECSCodes are ECS's error codes. ECS speaks awsJson1_1 and sends
// throttling and access errors as HTTP 400: the code decides.
var ECSCodes = Codes{
	Throttle: map[string]bool{
		"ThrottlingException": true, "Throttling": true, "RequestLimitExceeded": true,
		"TooManyRequestsException": true, "RequestThrottled": true,
	},
	Credentials: map[string]bool{
		"AccessDeniedException": true, "UnrecognizedClientException": true, "InvalidSignatureException": true,
		"IncompleteSignature": true, "MissingAuthenticationToken": true, "ExpiredTokenException": true,
		"InvalidClientTokenId": true, "NotAuthorized": true,
	},
	Server: map[string]bool{
		"ServerException": true, "InternalFailure": true, "ServiceUnavailable": true, "ServiceUnavailableException": true,
	},
	Permissions: "ecs:ListTasks, ecs:DescribeTasks and ecs:DescribeContainerInstances",
}
