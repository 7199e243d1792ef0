package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// fakeEC2 answers DescribeInstances with EC2's reference example, when
// the request is a SigV4-signed Query call filtering on running
// instances and the tag; fail, when set, makes it answer 503 with an
// error that echoes the session token.
func fakeEC2(t *testing.T, fail *atomic.Bool) *httptest.Server {
	t.Helper()
	sample, err := os.ReadFile("../../providers/ec2/testdata/describe_instances.xml")
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		q := r.PostForm
		if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+bridgetest.AWSKeyID+"/") ||
			q.Get("Action") != "DescribeInstances" || q.Get("Filter.1.Name") != "tag:team" || q.Get("Filter.2.Value.1") != "running" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>x</RequestID></Response>`)
			return
		}
		if fail != nil && fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>token `+
				r.Header.Get("X-Amz-Security-Token")+`</Message></Error></Errors><RequestID>x</RequestID></Response>`)
			return
		}
		w.Write(sample)
	}))
	t.Cleanup(api.Close)
	return api
}

func TestEC2Config(t *testing.T) {
	keys, err := envKeys(envPrefix, newTopologyEnv().spec())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"PEERBRIDGE_EC2_FILTERS", "PEERBRIDGE_EC2_ADDRESS", "PEERBRIDGE_EC2_LABEL_TAG"} {
		if !slices.Contains(keys, k) {
			t.Errorf("envconfig does not read %s: %v", k, keys)
		}
	}

	api := fakeEC2(t, nil)
	tests := []struct {
		name string
		env  map[string]string
		aws  map[string]string
		want []string
	}{
		{"bad settings named per topology", map[string]string{
			"PEERBRIDGE_TOPOLOGIES": "web", "PEERBRIDGE_PROVIDER": "ec2",
			"PEERBRIDGE_WEB_EC2_FILTERS": "tag:app=", "PEERBRIDGE_EC2_ADDRESS": "elastic",
		}, nil, []string{
			"PEERBRIDGE_WEB_EC2_FILTERS: filter tag:app has an empty value",
			`PEERBRIDGE_EC2_ADDRESS: "elastic" is not private, public or ipv6`,
		}},
		{"no region", map[string]string{"PEERBRIDGE_SERVICE": "web", "PEERBRIDGE_PROVIDER": "ec2"},
			map[string]string{"AWS_REGION": ""}, []string{"AWS_REGION: no AWS region: set AWS_REGION"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			bridgetest.AWSEnv(t, api.URL)
			for k, v := range tc.aws {
				t.Setenv(k, v)
			}
			_, err := loadConfig()
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d lines", err, len(tc.want))
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("line %d: %q, want it to start with %q", i, lines[i], want)
				}
			}
		})
	}
}

// TestRunEC2 wires the ec2 provider from the environment, credentials
// and endpoint from the AWS SDK's own variables, and checks that the
// secret key and session token appear nowhere while the API fails.
func TestRunEC2(t *testing.T) {
	var fail atomic.Bool
	api := fakeEC2(t, &fail)
	setEnv(t, map[string]string{
		"PEERBRIDGE_SERVICE":       "web",
		"PEERBRIDGE_PROVIDER":      "ec2",
		"PEERBRIDGE_EC2_FILTERS":   "tag:team=platform",
		"PEERBRIDGE_POLL_INTERVAL": "1s",
		"PEERBRIDGE_DNS_ADDR":      "127.0.0.1:0",
		"PEERBRIDGE_HTTP_ADDR":     "127.0.0.1:0",
	})
	bridgetest.AWSEnv(t, api.URL)

	var out bytes.Buffer
	if err := NewMain(&out, &out).Run(context.Background(), []string{"check"}); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"topology web: service web, provider ec2, peers: 1 (1 published)",
		"my-instance              10.0.0.157",
		"id=i-1234567890abcdef0",
		"credentials_source=EnvConfigCredentials",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}

	run := startMain(t)
	waitReady(t, "http://"+run.http)
	if got := bridgetest.Dig(t, run.dns, "my-instance.web.peers.internal", "A"); !slices.Equal(got, []string{"10.0.0.157"}) {
		t.Errorf("A answer %v", got)
	}
	fail.Store(true)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(run.logs.String(), "poll failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed poll:\n%s", run.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	metrics := get(t, "http://"+run.http+"/metrics")
	if !strings.Contains(metrics, `peerbridge_provider_api_requests_total{provider="ec2",topology="web"}`) ||
		strings.Contains(metrics, `peerbridge_poll_failures_total{kind="rate_limited",provider="ec2",topology="web"} 0`) {
		t.Errorf("ec2 metrics missing:\n%s", metrics)
	}
	status := get(t, "http://"+run.http+"/status")
	if !strings.Contains(status, "[redacted]") {
		t.Errorf("the status does not show the scrubbed error:\n%s", status)
	}
	for what, text := range map[string]string{"check": out.String(), "log": run.logs.String(), "metrics": metrics, "status": status} {
		for _, secret := range []string{bridgetest.AWSSecret, bridgetest.AWSSessionToken} {
			if strings.Contains(text, secret) {
				t.Fatalf("a secret is in the %s:\n%s", what, text)
			}
		}
	}
}

// TestEC2PolicyDocumented keeps the ec2 reference's IAM policy equal to
// the deploy file's: ec2:DescribeInstances and nothing more.
func TestEC2PolicyDocumented(t *testing.T) {
	readme := repoFile(t, "providers/ec2/README.md")
	_, after, ok := strings.Cut(readme, "\n## Permissions needed\n")
	_, block, ok2 := strings.Cut(after, "```json\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("providers/ec2/README.md has no IAM policy in its Permissions needed section")
	}
	type policy struct {
		Statement []struct{ Effect, Action, Resource string }
	}
	var doc, file policy
	if err := json.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("providers/ec2/README.md's policy: %v", err)
	}
	if err := json.Unmarshal([]byte(repoFile(t, "deploy/aws/iam-policy.json")), &file); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 || len(file.Statement) != 1 || doc.Statement[0] != file.Statement[0] ||
		doc.Statement[0].Action != "ec2:DescribeInstances" || doc.Statement[0].Effect != "Allow" {
		t.Errorf("providers/ec2/README.md's policy %+v, deploy/aws/iam-policy.json %+v", doc, file)
	}
}
