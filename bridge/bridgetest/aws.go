package bridgetest

import (
	"path/filepath"
	"testing"
)

// Fake AWS credentials, in the shape of AWS's documentation examples. The
// secret and the token are what must never reach a log line or an error.
const (
	AWSKeyID        = "AKIDEXAMPLE"
	AWSSecret       = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	AWSSessionToken = "FwoGZXIvYXdzEXAMPLESESSIONTOKENdGhpcyBpcyBub3QgYSByZWFs"
	AWSRegion       = "eu-west-1"
)

// AWSEnv points the AWS SDK's default chain at endpoint (an EC2 fake) for
// this test: a region, the static fake credentials, and none of the
// shared files, profile, retry settings or metadata service the machine
// running the tests might have.
func AWSEnv(t testing.TB, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_EC2":        endpoint,
		"AWS_ENDPOINT_URL":            "",
		"AWS_REGION":                  AWSRegion,
		"AWS_DEFAULT_REGION":          "",
		"AWS_ACCESS_KEY_ID":           AWSKeyID,
		"AWS_SECRET_ACCESS_KEY":       AWSSecret,
		"AWS_SESSION_TOKEN":           AWSSessionToken,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_MAX_ATTEMPTS":            "",
		"AWS_RETRY_MODE":              "",
	} {
		t.Setenv(k, v)
	}
}
