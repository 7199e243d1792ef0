package platform

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// ReadToken reads an API token from a file (a mounted secret). Errors
// name the file, which is no secret, and never quote its content, which
// is.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("the token file %s is empty", path)
	}
	return token, nil
}

// RedactURL hides a password in a URL's user info, for a start-up log
// line.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}
