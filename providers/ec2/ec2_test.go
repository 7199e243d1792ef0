package ec2

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestParseFilters(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "empty: running only", in: "", want: "instance-state-name=running"},
		{name: "CLI names", in: "tag:app=myapp;availability-zone=eu-west-1a,eu-west-1b",
			want: "tag:app=myapp;availability-zone=eu-west-1a,eu-west-1b;instance-state-name=running"},
		{name: "spaces trimmed, empty parts ignored", in: " tag-key = app ; ; vpc-id= vpc-1 , vpc-2 ;",
			want: "tag-key=app;vpc-id=vpc-1,vpc-2;instance-state-name=running"},
		{name: "tag key with spaces and colons", in: "tag:aws:cloudformation:stack-name=my stack",
			want: "tag:aws:cloudformation:stack-name=my stack;instance-state-name=running"},
		{name: "wildcards pass through", in: "tag:Name=web-*", want: "tag:Name=web-*;instance-state-name=running"},
		{name: "running given by the user", in: "instance-state-name=running;tag:app=x",
			want: "tag:app=x;instance-state-name=running"},
		{name: "other states rejected", in: "instance-state-name=running,stopped", wantErr: "instance-state-name is always running"},
		{name: "no equals", in: "tag:app", wantErr: `"tag:app" is not name=value`},
		{name: "empty name", in: "=x", wantErr: "empty filter name"},
		{name: "empty value", in: "vpc-id=", wantErr: "filter vpc-id has an empty value"},
		{name: "empty value in a list", in: "availability-zone=a,,b", wantErr: "filter availability-zone has an empty value"},
		{name: "tag without key", in: "tag:=x", wantErr: "tag filter without a key"},
		{name: "upper case name", in: "Name=web", wantErr: `"Name" is not a DescribeInstances filter name`},
		{name: "twice", in: "vpc-id=a;vpc-id=b", wantErr: "filter vpc-id is given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFilters(tc.in)
			if tc.wantErr != "" {
				var se *bridge.SettingError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &se) || se.Setting != "EC2_FILTERS" {
					t.Fatalf("ParseFilters(%q) = %v, %v; want an EC2_FILTERS error containing %q", tc.in, FormatFilters(got), err, tc.wantErr)
				}
				return
			}
			if err != nil || FormatFilters(got) != tc.want {
				t.Fatalf("ParseFilters(%q) = %q, %v; want %q", tc.in, FormatFilters(got), err, tc.want)
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]Address{"private": Private, "PUBLIC": Public, " ipv6 ": IPv6} {
		if got, err := ParseAddress(in); err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %q, %v", in, got, err)
		}
	}
	var se *bridge.SettingError
	if _, err := ParseAddress("elastic"); !errors.As(err, &se) || se.Setting != "EC2_ADDRESS" {
		t.Errorf("ParseAddress(elastic) = %v, want an EC2_ADDRESS error", err)
	}
}

// account is a fake account's instances: three reservations over pages,
// instances in every state, some without a public address or IPv6, some
// without tags, two sharing a Name, and some of another app.
func account() []instance {
	return []instance{
		{ID: "i-0a1", Type: "t3.micro", AZ: "eu-west-1a", VPC: "vpc-0aa", Private: "10.0.1.1", Public: "54.0.0.1",
			IPv6: []string{"2a05:d018::1"}, Tags: [][2]string{{"Name", "web-1"}, {"app", "web"}, {"env", "prod"}}, Reservation: "r-1"},
		{ID: "i-0a2", Type: "t3.micro", AZ: "eu-west-1b", VPC: "vpc-0aa", Private: "10.0.2.1",
			Tags: [][2]string{{"Name", "web-2"}, {"app", "web"}}, Reservation: "r-1"},
		{ID: "i-0a3", Type: "t3.micro", AZ: "eu-west-1a", VPC: "vpc-0aa", Private: "10.0.1.3", State: "stopped",
			Tags: [][2]string{{"Name", "web-3"}, {"app", "web"}}, Reservation: "r-1"},
		{ID: "i-0b1", Type: "m5.large", AZ: "eu-west-1a", VPC: "vpc-0aa", Private: "10.0.1.4", Public: "54.0.0.4",
			IPv6: []string{"2a05:d018::4", "2a05:d018::44"}, Tags: [][2]string{{"app", "web"}}, Reservation: "r-2"},
		{ID: "i-0b2", Type: "m5.large", AZ: "eu-west-1b", VPC: "vpc-0aa", Private: "10.0.2.5", State: "pending",
			Tags: [][2]string{{"Name", "web-5"}, {"app", "web"}}, Reservation: "r-2"},
		{ID: "i-0b3", Type: "m5.large", AZ: "eu-west-1b", VPC: "vpc-0aa", Private: "10.0.2.6",
			Tags: [][2]string{{"Name", "web-1"}, {"app", "web"}}, Reservation: "r-2"},
		{ID: "i-0c1", Type: "t3.small", AZ: "eu-west-1c", VPC: "vpc-0bb", Private: "10.1.3.1", Public: "54.0.1.1",
			Tags: [][2]string{{"Name", "db-1"}, {"app", "db"}}, Reservation: "r-3"},
		{ID: "i-0c2", Type: "t3.small", AZ: "eu-west-1c", VPC: "vpc-0bb", Private: "10.1.3.2", State: "terminated",
			Tags: [][2]string{{"Name", "db-2"}, {"app", "db"}}, Reservation: "r-3"},
		{ID: "i-0d1", Type: "t2.nano", AZ: "eu-west-1a", Private: "172.31.0.9", Reservation: "r-4"}, // EC2-Classic style: no VPC, no tags
	}
}

func TestPeers(t *testing.T) {
	tests := []struct {
		name     string
		filters  string
		address  Address
		labelTag string
		want     []string
		skipped  int64
	}{
		{name: "private, every running instance", want: []string{
			"db-1=10.1.3.1", "i-0b1=10.0.1.4", "i-0d1=172.31.0.9", "web-1=10.0.1.1", "web-1=10.0.2.6", "web-2=10.0.2.1",
		}},
		{name: "tag filter", filters: "tag:app=web", want: []string{
			"i-0b1=10.0.1.4", "web-1=10.0.1.1", "web-1=10.0.2.6", "web-2=10.0.2.1",
		}},
		{name: "zone and vpc filters", filters: "availability-zone=eu-west-1a,eu-west-1c;vpc-id=vpc-0aa", want: []string{
			"i-0b1=10.0.1.4", "web-1=10.0.1.1",
		}},
		{name: "tag-key filter", filters: "tag-key=env", want: []string{"web-1=10.0.1.1"}},
		{name: "wildcard", filters: "tag:Name=db-*", want: []string{"db-1=10.1.3.1"}},
		{name: "public, those without one skipped", filters: "tag:app=web", address: Public,
			want: []string{"i-0b1=54.0.0.4", "web-1=54.0.0.1"}, skipped: 2},
		{name: "ipv6 from the network interfaces", filters: "tag:app=web", address: IPv6,
			want: []string{"i-0b1=2a05:d018::4", "web-1=2a05:d018::1"}, skipped: 2},
		{name: "another label tag", filters: "tag:app=web", labelTag: "env", want: []string{
			"i-0a2=10.0.2.1", "i-0b1=10.0.1.4", "i-0b3=10.0.2.6", "prod=10.0.1.1",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeEC2(t, account())
			api.PageSize = 2
			filters, err := ParseFilters(tc.filters)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := newProvider(t, api, Options{Filters: filters, Address: tc.address, LabelTag: tc.labelTag})
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := bridgetest.Summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers\n got %q\nwant %q", got, tc.want)
			}
			if p.Skipped() != tc.skipped {
				t.Errorf("skipped %d, want %d", p.Skipped(), tc.skipped)
			}
			// Every page was asked for with the filters, running added, and
			// 1,000 a page; the fake's pages hold two instances.
			reqs := api.RequestLog()
			if int64(len(reqs)) != p.Requests() {
				t.Errorf("provider counted %d requests, the API saw %d", p.Requests(), len(reqs))
			}
			for i, q := range reqs {
				if q.Get("MaxResults") != "1000" || (i > 0) != q.Has("NextToken") {
					t.Errorf("request %d: MaxResults %q, NextToken %q", i, q.Get("MaxResults"), q.Get("NextToken"))
				}
				last := len(filters)
				if q.Get("Filter."+strconv.Itoa(last)+".Name") != "instance-state-name" || q.Get("Filter."+strconv.Itoa(last)+".Value.1") != "running" {
					t.Errorf("request %d does not filter on running: %v", i, q)
				}
			}
		})
	}
}

func TestAttrsAndLabels(t *testing.T) {
	api := newFakeEC2(t, account())
	p, _ := newProvider(t, api, Options{})
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]bridge.Peer{}
	for _, pe := range peers {
		byID[pe.ID] = pe
	}
	want := map[string]string{
		"instance_id": "i-0a1", "instance_type": "t3.micro", "availability_zone": "eu-west-1a",
		"vpc_id": "vpc-0aa", "tags": "Name=web-1,app=web,env=prod",
	}
	if got := byID["i-0a1"].Attrs; !mapsEqual(got, want) {
		t.Errorf("attrs of i-0a1 = %v, want %v", got, want)
	}
	// Without tags or a VPC, those attributes are absent rather than empty.
	if got := byID["i-0d1"].Attrs; !mapsEqual(got, map[string]string{
		"instance_id": "i-0d1", "instance_type": "t2.nano", "availability_zone": "eu-west-1a",
	}) {
		t.Errorf("attrs of i-0d1 = %v", got)
	}
	// Two instances named web-1 get distinct labels, each kept by its id.
	set := bridge.Set{Peers: peers}.Normalize()
	labels := bridge.Labels(set.Peers)
	seen := map[string]string{}
	for i, l := range labels {
		if other, dup := seen[l]; dup {
			t.Errorf("label %s is both %s's and %s's", l, other, set.Peers[i].ID)
		}
		seen[l] = set.Peers[i].ID
	}
	if seen["web-1"] == "" || len(seen) != len(peers) {
		t.Errorf("labels %v", labels)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestSkippedLoggedOnce: an instance without the address is counted on
// every poll but logged once.
func TestSkippedLoggedOnce(t *testing.T) {
	api := newFakeEC2(t, account())
	p, logs := newProvider(t, api, Options{Address: Public})
	for range 3 {
		if _, err := p.Peers(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "instance_id=i-0a2"); n != 1 {
		t.Errorf("i-0a2 logged %d times, want once:\n%s", n, logs)
	}
	// i-0a2, i-0b3 and i-0d1 have no public address, on each of 3 polls.
	if p.Skipped() != 3*3 {
		t.Errorf("skipped %d, want 9", p.Skipped())
	}
}

// TestRequestsPerPoll: one request per page, no SDK retries, whatever
// the outcome.
func TestRequestsPerPoll(t *testing.T) {
	for _, n := range []int{0, 1, 999, 1000, 1001, 2500} {
		api := newFakeEC2(t, makeInstances(n))
		p, _ := newProvider(t, api, Options{})
		peers, err := p.Peers(context.Background())
		if err != nil || len(peers) != n {
			t.Fatalf("%d instances: %d peers, %v", n, len(peers), err)
		}
		if want := int64(max(1, (n+999)/1000)); p.Requests() != want {
			t.Errorf("%d instances: %d requests, want %d", n, p.Requests(), want)
		}
	}
	api := newFakeEC2(t, makeInstances(3))
	api.Fail = func(int, int) (int, string) { return 503, errorXML("RequestLimitExceeded", "Request limit exceeded.") }
	p, _ := newProvider(t, api, Options{})
	if _, err := p.Peers(context.Background()); err == nil || p.Requests() != 1 {
		t.Errorf("throttled poll: %d requests (want 1, no SDK retry), error %v", p.Requests(), err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		credential bool
		transient  bool
		kind       bridge.FailureKind
	}{
		{"throttled", 503, errorXML("RequestLimitExceeded", "Request limit exceeded."), false, true, "rate_limited"},
		{"throttled, 400", 400, errorXML("Throttling", "Rate exceeded"), false, true, "rate_limited"},
		{"auth failure", 401, errorXML("AuthFailure", "AWS was not able to validate the provided access credentials"), true, false, bridge.FailureCredentials},
		{"unauthorized", 403, errorXML("UnauthorizedOperation", "You are not authorized to perform this operation."), true, false, bridge.FailureCredentials},
		{"internal error", 500, errorXML("InternalError", "An internal error has occurred."), false, true, "transient"},
		{"unavailable", 503, errorXML("Unavailable", "The server is overloaded."), false, true, "transient"},
		{"bad gateway, no XML", 502, "<html>Bad Gateway</html>", false, true, "transient"},
		{"malformed XML", 200, `<?xml version="1.0"?><DescribeInstancesResponse xmlns="` + ec2Namespace + `"><reservationSet><item><instancesSet>`, false, true, "transient"},
		{"bad filter", 400, errorXML("InvalidParameterValue", "The filter 'x' is invalid"), false, false, "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeEC2(t, makeInstances(3))
			api.Fail = func(int, int) (int, string) { return tc.status, tc.body }
			p, _ := newProvider(t, api, Options{})
			_, err := p.Peers(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, bridge.ErrCredentials) != tc.credential || errors.Is(err, bridge.ErrTransient) != tc.transient ||
				bridge.ClassifyFailure(err) != tc.kind {
				t.Errorf("error %v: credentials %v, transient %v, kind %s; want %v, %v, %s", err,
					errors.Is(err, bridge.ErrCredentials), errors.Is(err, bridge.ErrTransient), bridge.ClassifyFailure(err),
					tc.credential, tc.transient, tc.kind)
			}
		})
	}
	t.Run("no answer", func(t *testing.T) {
		api := newFakeEC2(t, nil)
		p, _ := newProvider(t, api, Options{})
		api.Close()
		if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrTransient) {
			t.Errorf("closed endpoint: %v, want transient", err)
		}
	})
	t.Run("poll timeout", func(t *testing.T) {
		api := newFakeEC2(t, nil)
		p, _ := newProvider(t, api, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		if _, err := p.Peers(ctx); bridge.ClassifyFailure(err) != "timeout" {
			t.Errorf("expired context: %v (%s), want a timeout", err, bridge.ClassifyFailure(err))
		}
	})
	t.Run("repeating token", func(t *testing.T) {
		api := newFakeEC2(t, makeInstances(10))
		api.PageSize = 5
		p, _ := newProvider(t, api, Options{})
		api.Fail = func(n, _ int) (int, string) {
			if n < 3 {
				return 0, ""
			}
			// The third request (page 3) repeats page 2's token.
			return 200, `<DescribeInstancesResponse xmlns="` + ec2Namespace + `"><requestId>x</requestId><reservationSet/><nextToken>page-token-5</nextToken></DescribeInstancesResponse>`
		}
		api.Instances = makeInstances(20)
		if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrTransient) || !strings.Contains(err.Error(), "repeats") {
			t.Errorf("repeating token: %v", err)
		}
	})
}

// TestFaultsKeepTheSet runs each fault through the reconcile loop: the
// published set stays, and the next good poll brings a scale-up.
func TestFaultsKeepTheSet(t *testing.T) {
	faults := []struct {
		name string
		set  func(f *fakeEC2)
	}{
		{"throttling", func(f *fakeEC2) {
			f.Fail = func(int, int) (int, string) { return 503, errorXML("RequestLimitExceeded", "Request limit exceeded.") }
		}},
		{"500", func(f *fakeEC2) {
			f.Fail = func(int, int) (int, string) { return 500, errorXML("InternalError", "An internal error has occurred.") }
		}},
		{"malformed XML", func(f *fakeEC2) {
			f.Fail = func(int, int) (int, string) { return 200, "<DescribeInstancesResponse><reservationSet><item>" }
		}},
		{"a later page fails", func(f *fakeEC2) {
			f.Fail = func(_, page int) (int, string) {
				if page == 3 {
					return 503, errorXML("Unavailable", "The server is overloaded.")
				}
				return 0, ""
			}
		}},
		{"an empty answer once", func(f *fakeEC2) { f.Empty = 1 }},
		{"rejected credentials", func(f *fakeEC2) {
			f.Fail = func(int, int) (int, string) {
				return 401, errorXML("AuthFailure", "AWS was not able to validate the provided access credentials")
			}
		}},
	}
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			api := newFakeEC2(t, makeInstances(7))
			api.PageSize = 3 // three pages
			p, _ := newProvider(t, api, Options{})
			loop, rec, _ := bridgetest.NewLoop("ec2", p)
			loop.Poll(context.Background())
			if rec.Peers() != 7 || p.Requests() != 3 {
				t.Fatalf("first poll published %d peers with %d requests, want 7 with 3", rec.Peers(), p.Requests())
			}

			api.Set(fault.set)
			loop.Poll(context.Background())
			if rec.Peers() != 7 {
				t.Fatalf("after the fault %d peers published, want the 7 kept", rec.Peers())
			}

			// Recovered, with two more instances: the next poll has them.
			api.Set(func(f *fakeEC2) { f.Fail = nil; f.Instances = makeInstances(9) })
			loop.Poll(context.Background())
			if rec.Peers() != 9 {
				t.Fatalf("after recovery %d peers published, want 9", rec.Peers())
			}
			if st := loop.Status(); st.LastError != "" || st.Failures != 0 {
				t.Errorf("status after recovery: %+v", st)
			}
		})
	}
}

// TestSecretsNeverLeak runs a loop against an API that fails, echoing the
// request's session token and the secret key in its error message, and
// checks that neither reaches a log line, an error or the status.
func TestSecretsNeverLeak(t *testing.T) {
	api := newFakeEC2(t, makeInstances(3))
	p, logs := newProvider(t, api, Options{})
	logger := testLogger(logs)
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "ec2"},
		Interval: time.Minute, Provider: p, Logger: logger,
	})
	loop.Poll(context.Background())
	var errs []string
	for _, status := range []int{400, 401, 500, 503} {
		api.Set(func(f *fakeEC2) {
			f.Fail = func(int, int) (int, string) {
				h := f.Headers[len(f.Headers)-1]
				return status, errorXML("AuthFailure", "token "+h.Get("X-Amz-Security-Token")+" secret "+testSecret)
			}
		})
		if h := api.Headers[len(api.Headers)-1]; h.Get("X-Amz-Security-Token") != testSessionToken {
			t.Fatalf("the SDK did not send the session token: %v", h)
		}
		_, err := p.Peers(context.Background())
		if err == nil {
			t.Fatal("no error")
		}
		errs = append(errs, err.Error())
		loop.Poll(context.Background())
		errs = append(errs, loop.Status().LastError)
	}
	all := logs.String() + strings.Join(errs, "\n")
	if !strings.Contains(all, "[redacted]") {
		t.Errorf("the echoed secrets were not seen scrubbed:\n%s", all)
	}
	for _, secret := range []string{testSecret, testSessionToken} {
		if strings.Contains(all, secret) {
			t.Errorf("a secret leaked:\n%s", all)
		}
	}
	if !strings.Contains(logs.String(), "credentials_source=EnvConfigCredentials") {
		t.Errorf("the start-up log does not say where the credentials came from:\n%s", logs)
	}
}

func TestStartUp(t *testing.T) {
	api := newFakeEC2(t, nil)
	t.Run("missing region", func(t *testing.T) {
		awsEnv(t, api.URL())
		t.Setenv("AWS_REGION", "")
		if _, err := NewContext(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
			t.Errorf("New without a region: %v, want an error naming AWS_REGION", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		noCredentials(t, api.URL())
		_, err := NewContext(context.Background(), Options{})
		if err == nil || !strings.Contains(err.Error(), "no AWS credentials: set AWS_ACCESS_KEY_ID") {
			t.Errorf("New without credentials: %v", err)
		}
	})
	t.Run("profile from a shared file", func(t *testing.T) {
		noCredentials(t, api.URL())
		t.Setenv("AWS_REGION", "")
		t.Setenv("AWS_PROFILE", "peers")
		dir := t.TempDir()
		writeFile(t, dir+"/config", "[profile peers]\nregion = "+testRegion+"\n")
		writeFile(t, dir+"/credentials", "[peers]\naws_access_key_id = "+testKeyID+"\naws_secret_access_key = "+testSecret+"\n")
		t.Setenv("AWS_CONFIG_FILE", dir+"/config")
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
		logs := &bridgetest.Buffer{}
		p, err := NewContext(context.Background(), Options{Logger: testLogger(logs)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Peers(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), `credentials_source="SharedConfigCredentials`) || strings.Contains(logs.String(), testSecret) {
			t.Errorf("start-up log:\n%s", logs)
		}
	})
	t.Run("AWS_ENDPOINT_URL", func(t *testing.T) {
		awsEnv(t, "")
		t.Setenv("AWS_ENDPOINT_URL", api.URL())
		p, err := NewContext(context.Background(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Peers(context.Background()); err != nil {
			t.Fatalf("through AWS_ENDPOINT_URL: %v", err)
		}
	})
}

// noCredentials is awsEnv without the static credentials.
func noCredentials(t *testing.T, endpoint string) {
	awsEnv(t, endpoint)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSampleAnswer parses an answer in the shape of EC2's API reference
// example, with the fields peerbridge does not read.
func TestSampleAnswer(t *testing.T) {
	body, err := os.ReadFile("testdata/describe_instances.xml")
	if err != nil {
		t.Fatal(err)
	}
	api := newFakeEC2(t, nil)
	api.Fail = func(int, int) (int, string) { return 200, string(body) }
	for _, tc := range []struct {
		address Address
		want    string
	}{{Private, "my-instance=10.0.0.157"}, {Public, "my-instance=3.236.103.245"}, {IPv6, "my-instance=2600:1f18:f85:e100:9b1f:aa55:3a47:b2e1"}} {
		p, _ := newProvider(t, api, Options{Address: tc.address})
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := bridgetest.Summary(peers); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s: peers %q, want %q", tc.address, got, tc.want)
		}
		if tc.address == Private && peers[0].Attrs["tags"] != "Name=my-instance,team=platform" {
			t.Errorf("attrs %v", peers[0].Attrs)
		}
	}
}

// The static credentials in aws.Config never need a network, so a
// provider built from a given config works without the environment.
func TestGivenConfig(t *testing.T) {
	api := newFakeEC2(t, makeInstances(2))
	awsEnv(t, api.URL())
	cfg, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_REGION", "") // from here on, only cfg counts
	p, err := NewContext(context.Background(), Options{AWS: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	if peers, err := p.Peers(context.Background()); err != nil || len(peers) != 2 {
		t.Errorf("%d peers, %v", len(peers), err)
	}
}
