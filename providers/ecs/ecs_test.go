package ecs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/ec2/ec2test"
	"github.com/peerbridge/peerbridge/providers/ecs/ecstest"
)

func TestConfigure(t *testing.T) {
	w := newWorld(t, nil, nil, nil)
	tests := []struct {
		name     string
		env      Env
		unset    string
		settings []string // the SettingErrors' names, in order
		variable string   // a VariableError's
	}{
		{name: "service", env: Env{EcsCluster: "prod", EcsService: "web"}},
		{name: "family, ARNs", env: Env{EcsCluster: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod", EcsFamily: "web", EcsAddress: "IPv6"}},
		{name: "service ARN", env: Env{EcsCluster: "prod", EcsService: "arn:aws:ecs:eu-west-1:123456789012:service/prod/web"}},
		{name: "nothing", env: Env{}, settings: []string{"ECS_CLUSTER", "ECS_SERVICE"}},
		{name: "both", env: Env{EcsCluster: "prod", EcsService: "web", EcsFamily: "web"}, settings: []string{"ECS_SERVICE"}},
		{name: "bad names and address", env: Env{EcsCluster: "prod cluster", EcsFamily: "web:3", EcsAddress: "public"},
			settings: []string{"ECS_CLUSTER", "ECS_FAMILY", "ECS_ADDRESS"}},
		{name: "no region", env: Env{EcsCluster: "prod", EcsService: "web"}, unset: "AWS_REGION", variable: "AWS_REGION"},
		{name: "bad endpoint", env: Env{EcsCluster: "prod", EcsService: "web"}, unset: "AWS_ENDPOINT_URL_ECS", variable: "AWS_ENDPOINT_URL_ECS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			awsEnv(t, w)
			switch tc.unset {
			case "AWS_REGION":
				t.Setenv("AWS_REGION", "")
			case "AWS_ENDPOINT_URL_ECS":
				t.Setenv("AWS_ENDPOINT_URL_ECS", "ecs.local:443")
			}
			opts, err := Configure(tc.env)
			var names []string
			for _, se := range bridge.SettingErrors(err) {
				names = append(names, se.Setting)
			}
			if !slices.Equal(names, tc.settings) {
				t.Errorf("setting errors %q, want %q (%v)", names, tc.settings, err)
			}
			var ve *bridge.VariableError
			if got := errors.As(err, &ve); got != (tc.variable != "") || (got && ve.Variable != tc.variable) {
				t.Errorf("variable error %v, want one for %q", err, tc.variable)
			}
			if err != nil {
				return
			}
			if _, err := New(opts); err != nil {
				t.Errorf("New: %v", err)
			}
			line := fmt.Sprintln(opts.LogAttrs()...)
			if !strings.Contains(line, "credentials environment (AWS_ACCESS_KEY_ID) region eu-west-1") || strings.Contains(line, bridgetest.AWSSecret) {
				t.Errorf("LogAttrs %s", line)
			}
		})
	}
	// New refuses options Configure would not make.
	for _, opts := range []Options{{}, {Cluster: "prod", Service: "a", Family: "b"}, {Cluster: "prod", Service: "a"}} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) took them", opts)
		}
	}
}

func summary(peers []bridge.Peer) []string {
	out := make([]string, 0, len(peers))
	for _, p := range peers {
		s := p.Name + "="
		for i, a := range p.Addrs {
			if i > 0 {
				s += ","
			}
			s += a.String()
		}
		out = append(out, fmt.Sprintf("%s:%d", s, p.Port))
	}
	slices.Sort(out)
	return out
}

// cluster of every kind: a Fargate service's tasks in every state and
// health, a task of another service, and a family's task run by hand.
func mixed() []ecstest.Task {
	return []ecstest.Task{
		{ID: "f1", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.1", IPv6: "2600:1f18::1", Health: types.HealthStatusHealthy, AZ: "eu-west-1a"},
		{ID: "f2", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.2", IPv6: "2600:1f18::2", Health: types.HealthStatusUnknown},
		{ID: "f3", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.3", Health: types.HealthStatusUnhealthy},
		{ID: "f4", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.4", LastStatus: "PENDING"},
		{ID: "f5", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.5", LastStatus: "STOPPED"},
		{ID: "f6", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.6", LastStatus: "RUNNING", DesiredStatus: "STOPPED"}, // draining
		{ID: "f7", Service: "web", Family: "web", Revision: 3, IPv4: "10.1.0.7"},                                                  // IPv4 only
		{ID: "w1", Service: "worker", Family: "worker", IPv4: "10.1.1.1"},
		{ID: "m1", Family: "web", Revision: 4, IPv4: "10.1.2.1"},
	}
}

func TestFargateService(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     Env
		port    uint16
		want    []string
		skipped int64
	}{
		{name: "service, private", env: service("web"), port: 4000,
			want: []string{"f1=10.1.0.1:4000", "f2=10.1.0.2:4000", "f7=10.1.0.7:4000"}},
		{name: "service, no container port", env: service("web"),
			want: []string{"f1=10.1.0.1:0", "f2=10.1.0.2:0", "f7=10.1.0.7:0"}},
		{name: "service by ARN", env: Env{EcsCluster: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod",
			EcsService: "arn:aws:ecs:eu-west-1:123456789012:service/prod/worker"}, port: 4000,
			want: []string{"w1=10.1.1.1:4000"}},
		{name: "ipv6, one without skipped", env: Env{EcsCluster: cluster, EcsService: "web", EcsAddress: "ipv6"}, port: 4000,
			want: []string{"f1=2600:1f18::1:4000", "f2=2600:1f18::2:4000"}, skipped: 1},
		{name: "family: its service's tasks and the one run by hand", env: Env{EcsCluster: cluster, EcsFamily: "web"}, port: 4000,
			want: []string{"f1=10.1.0.1:4000", "f2=10.1.0.2:4000", "f7=10.1.0.7:4000", "m1=10.1.2.1:4000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, mixed(), nil, nil)
			p, _ := newProvider(t, w, tc.env, tc.port)
			peers, err := p.Peers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(peers); !slices.Equal(got, tc.want) {
				t.Errorf("peers\n got %q\nwant %q", got, tc.want)
			}
			if p.Skipped() != tc.skipped {
				t.Errorf("skipped %d, want %d", p.Skipped(), tc.skipped)
			}
			// No container instance or EC2 instance to look up.
			if n := w.ecs.Count("DescribeContainerInstances") + len(w.ec2.RequestLog()); n != 0 {
				t.Errorf("%d look-ups of instances for Fargate tasks", n)
			}
		})
	}
}

func TestAttrs(t *testing.T) {
	w := newWorld(t, mixed(), []ecstest.ContainerInstance{{ID: "ci9", EC2InstanceID: "i-9"}},
		[]ec2test.Instance{{ID: "i-9", Private: "10.0.9.9", VPC: "vpc-1"}})
	w.ecs.Tasks = append(w.ecs.Tasks, ecstest.Task{ID: "e1", Service: "web", Family: "web", Revision: 12, ContainerInstance: "ci9",
		Bindings: [][2]int32{{4000, 31000}}, AZ: "eu-west-1c"})
	p, _ := newProvider(t, w, service("web"), 4000)
	peers, err := p.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]bridge.Peer{}
	for _, pe := range peers {
		byID[pe.ID] = pe
	}
	for id, want := range map[string]map[string]string{
		"f1": {"task_arn": w.ecs.TaskARN("f1"), "group": "service:web", "availability_zone": "eu-west-1a",
			"launch_type": "FARGATE", "family": "web", "revision": "3"},
		"e1": {"task_arn": w.ecs.TaskARN("e1"), "group": "service:web", "availability_zone": "eu-west-1c",
			"launch_type": "EC2", "family": "web", "revision": "12", "container_instance": "ci9"},
	} {
		if got := byID[id].Attrs; !maps.Equal(got, want) {
			t.Errorf("attrs of %s:\n got %v\nwant %v", id, got, want)
		}
		for k := range byID[id].Attrs {
			if !slices.Contains(Info.Attrs, k) {
				t.Errorf("attribute %s is not in Info.Attrs", k)
			}
		}
	}
	if pe := byID["e1"]; pe.Name != "e1" || pe.Port != 31000 || pe.Addrs[0].String() != "10.0.9.9" {
		t.Errorf("e1: %+v", pe)
	}
}

// TestBridgeService: EC2 tasks in bridge mode are published on their
// instance's address with their own host port; tasks on one instance
// share the address; the instances are looked up once and then cached
// until the set of container instances changes.
func TestBridgeService(t *testing.T) {
	tasks, cis, instances := bridged(5, 2)
	tasks = append(tasks,
		ecstest.Task{ID: "nomap", Service: "web", Family: "web", ContainerInstance: "ci0", Bindings: [][2]int32{{9100, 40100}}},
		ecstest.Task{ID: "sick", Service: "web", Family: "web", ContainerInstance: "ci0", Bindings: [][2]int32{{4000, 32000}}, Health: types.HealthStatusUnhealthy},
		ecstest.Task{ID: "starting", Service: "web", Family: "web", ContainerInstance: "ci1", LastStatus: "PENDING"},
	)
	w := newWorld(t, tasks, cis, instances)
	p, logs := newProvider(t, w, service("web"), 4000)
	want := []string{
		"b0000000000000000000000000000000=10.0.0.1:32768", "b0000000000000000000000000000001=10.0.0.2:32769",
		"b0000000000000000000000000000002=10.0.0.1:32770", "b0000000000000000000000000000003=10.0.0.2:32771",
		"b0000000000000000000000000000004=10.0.0.1:32772",
	}
	poll := func(want []string, requests int64) {
		t.Helper()
		before := p.Requests()
		peers, err := p.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := summary(peers); !slices.Equal(got, want) {
			t.Errorf("peers\n got %q\nwant %q", got, want)
		}
		if n := p.Requests() - before; n != requests {
			t.Errorf("%d requests, want %d", n, requests)
		}
	}
	// ListTasks, DescribeTasks, DescribeContainerInstances, DescribeInstances.
	poll(want, 4)
	if !strings.Contains(logs.String(), "no host port mapped to the container port") || !strings.Contains(logs.String(), "task=nomap") {
		t.Errorf("the task without a mapping was not logged:\n%s", logs)
	}
	// Cached: the tasks only.
	poll(want, 2)
	ec2Reqs := w.ec2.RequestLog()
	if len(ec2Reqs) != 1 || ec2Reqs[0].Get("InstanceId.1") != "i-h0" || ec2Reqs[0].Get("InstanceId.2") != "i-h1" || ec2Reqs[0].Has("MaxResults") {
		t.Errorf("DescribeInstances requests %v", ec2Reqs)
	}

	// A third instance joins: only it is looked up.
	w.ec2.Set(func(f *ec2test.Server) {
		f.Instances = append(f.Instances, ec2test.Instance{ID: "i-h2", Private: "10.0.0.3", VPC: "vpc-0aa"})
	})
	w.ecs.Set(func(s *ecstest.Server) {
		s.ContainerInstances = append(s.ContainerInstances, ecstest.ContainerInstance{ID: "ci2", EC2InstanceID: "i-h2"})
		s.Tasks = append(s.Tasks, ecstest.Task{ID: "new", Service: "web", Family: "web", ContainerInstance: "ci2", Bindings: [][2]int32{{4000, 33000}}})
	})
	poll(append(slices.Clone(want), "new=10.0.0.3:33000"), 4)
	if got := w.ec2.RequestLog(); got[len(got)-1].Get("InstanceId.1") != "i-h2" || got[len(got)-1].Has("InstanceId.2") {
		t.Errorf("second DescribeInstances %v, want i-h2 alone", got[len(got)-1])
	}

	// IPv6: the instance's primary interface's first IPv6 address.
	p6, _ := newProvider(t, w, Env{EcsCluster: cluster, EcsService: "web", EcsAddress: "ipv6"}, 4000)
	peers, err := p6.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// i-h2 has no IPv6 address: its task is skipped, as is nomap.
	if got := summary(peers); len(got) != 5 || got[0] != "b0000000000000000000000000000000=2a05:d018::1:32768" ||
		got[1] != "b0000000000000000000000000000001=2a05:d018::2:32769" || p6.Skipped() != 2 {
		t.Errorf("ipv6 peers %q, %d skipped", got, p6.Skipped())
	}
}

// TestPaging: 250 tasks are three ListTasks pages of 100 and three
// DescribeTasks batches; every request asks for what the issue says.
func TestPaging(t *testing.T) {
	w := newWorld(t, fargate(250), nil, nil)
	p, _ := newProvider(t, w, service("web"), 4000)
	peers, err := p.Peers(context.Background())
	if err != nil || len(peers) != 250 {
		t.Fatalf("%d peers, %v", len(peers), err)
	}
	var lists, describes []map[string]any
	for _, r := range w.ecs.RequestLog() {
		var body map[string]any
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		switch r.Operation {
		case "ListTasks":
			lists = append(lists, body)
		case "DescribeTasks":
			describes = append(describes, body)
		}
	}
	if len(lists) != 3 || len(describes) != 3 || p.Requests() != 6 {
		t.Fatalf("%d ListTasks, %d DescribeTasks, %d requests; want 3, 3, 6", len(lists), len(describes), p.Requests())
	}
	for i, l := range lists {
		if l["maxResults"] != 100.0 || l["desiredStatus"] != "RUNNING" || l["serviceName"] != "web" || l["cluster"] != cluster ||
			(i > 0) != (l["nextToken"] != nil) {
			t.Errorf("ListTasks %d: %v", i, l)
		}
	}
	for i, d := range describes {
		if n := len(d["tasks"].([]any)); n != []int{100, 100, 50}[i] {
			t.Errorf("DescribeTasks %d: %d tasks", i, n)
		}
	}
}

// TestRequestsPerPoll measures the requests one poll costs, for the
// closing note: ListTasks pages plus DescribeTasks batches, and for
// bridge tasks the instance look-ups of the first poll.
func TestRequestsPerPoll(t *testing.T) {
	for _, n := range []int{0, 10, 100, 101, 250, 1000} {
		w := newWorld(t, fargate(n), nil, nil)
		p, _ := newProvider(t, w, service("web"), 4000)
		peers, err := p.Peers(context.Background())
		if err != nil || len(peers) != n {
			t.Fatalf("%d tasks: %d peers, %v", n, len(peers), err)
		}
		want := int64(max(1, (n+99)/100) + (n+99)/100)
		if p.Requests() != want {
			t.Errorf("%d Fargate tasks: %d requests, want %d", n, p.Requests(), want)
		}
		t.Logf("%d Fargate tasks: %d requests a poll", n, p.Requests())
	}
	for _, n := range []int{10, 250, 1000} {
		tasks, cis, instances := bridged(n, max(1, n/20))
		w := newWorld(t, tasks, cis, instances)
		p, _ := newProvider(t, w, service("web"), 4000)
		first, next := int64(0), int64(0)
		for i := range 2 {
			before := p.Requests()
			if peers, err := p.Peers(context.Background()); err != nil || len(peers) != n {
				t.Fatalf("%d bridge tasks: %d peers, %v", n, len(peers), err)
			}
			if i == 0 {
				first = p.Requests() - before
			} else {
				next = p.Requests() - before
			}
		}
		hosts := (len(cis) + 99) / 100
		if want := int64(2*((n+99)/100) + 2*hosts); first != want || next != int64(2*((n+99)/100)) {
			t.Errorf("%d bridge tasks on %d instances: %d then %d requests, want %d then %d", n, len(cis), first, next, want, 2*((n+99)/100))
		}
		t.Logf("%d bridge tasks on %d instances: %d requests on the first poll, %d after", n, len(cis), first, next)
	}
}

func TestErrors(t *testing.T) {
	type fault func(w world)
	ecsFail := func(op string, status int, body string) fault {
		return func(w world) {
			w.ecs.Fail = func(o string, _ int) (int, string) {
				if o == op {
					return status, body
				}
				return 0, ""
			}
		}
	}
	tests := []struct {
		name  string
		fault fault
		kind  bridge.FailureKind
		text  string
	}{
		{"throttled, 400", ecsFail("ListTasks", 400, ecstest.ErrorBody("ThrottlingException", "Rate exceeded")), bridge.FailureRateLimited, "ThrottlingException"},
		{"throttled describing", ecsFail("DescribeTasks", 400, ecstest.ErrorBody("ThrottlingException", "Rate exceeded")), bridge.FailureRateLimited, ""},
		{"access denied, 400", ecsFail("ListTasks", 400, ecstest.ErrorBody("AccessDeniedException",
			"User: arn:aws:sts::123456789012:assumed-role/peerbridge/x is not authorized to perform: ecs:ListTasks")), bridge.FailureCredentials, "ecs:ListTasks"},
		{"access denied, namespaced type", ecsFail("DescribeContainerInstances", 400,
			ecstest.ErrorBody("com.amazonaws.ecs.v20141113#AccessDeniedException", "denied")), bridge.FailureCredentials, ""},
		{"unrecognized client", ecsFail("ListTasks", 400, ecstest.ErrorBody("UnrecognizedClientException", "The security token included in the request is invalid.")), bridge.FailureCredentials, ""},
		{"server exception", ecsFail("DescribeTasks", 500, ecstest.ErrorBody("ServerException", "Service Unavailable.")), bridge.FailureTransient, ""},
		{"bad gateway, no JSON", ecsFail("ListTasks", 502, "<html>Bad Gateway</html>"), bridge.FailureTransient, ""},
		{"malformed JSON", ecsFail("DescribeTasks", 200, `{"tasks":[{"taskArn":`), bridge.FailureTransient, ""},
		{"cluster not found", func(w world) { w.ecs.Fail = ecstest.Fault400("ClusterNotFoundException", "Cluster not found.") }, bridge.FailureError, "ClusterNotFoundException"},
		{"a failure in DescribeTasks", func(w world) { w.ecs.Missing = []string{"b0000000000000000000000000000001"} }, bridge.FailureTransient, "MISSING"},
		{"a failure in DescribeContainerInstances", func(w world) { w.ecs.Missing = []string{"ci1"} }, bridge.FailureTransient, "MISSING"},
		{"EC2 throttled", func(w world) {
			w.ec2.Fail = func(int, int) (int, string) {
				return 503, ec2test.ErrorXML("RequestLimitExceeded", "Request limit exceeded.")
			}
		}, bridge.FailureRateLimited, ""},
		{"EC2 unauthorized", func(w world) {
			w.ec2.Fail = func(int, int) (int, string) {
				return 403, ec2test.ErrorXML("UnauthorizedOperation", "You are not authorized to perform this operation.")
			}
		}, bridge.FailureCredentials, "ec2:DescribeInstances"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tasks, cis, instances := bridged(5, 2)
			w := newWorld(t, tasks, cis, instances)
			p, _ := newProvider(t, w, service("web"), 4000)
			tc.fault(w)
			_, err := p.Peers(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			if got := bridge.ClassifyFailure(err); got != tc.kind || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v: kind %s, want %s containing %q", err, got, tc.kind, tc.text)
			}
		})
	}
	t.Run("listed twice", func(t *testing.T) {
		w := newWorld(t, fargate(150), nil, nil)
		p, _ := newProvider(t, w, service("web"), 4000)
		w.ecs.Twice = true
		if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrInconsistentListing) {
			t.Errorf("a task on two pages: %v", err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		w := newWorld(t, fargate(3), nil, nil)
		p, _ := newProvider(t, w, service("web"), 4000)
		w.ecs.Close()
		if _, err := p.Peers(context.Background()); bridge.ClassifyFailure(err) != bridge.FailureTransient {
			t.Errorf("closed endpoint: %v", err)
		}
	})
	t.Run("poll timeout", func(t *testing.T) {
		w := newWorld(t, fargate(3), nil, nil)
		p, _ := newProvider(t, w, service("web"), 4000)
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		if _, err := p.Peers(ctx); bridge.ClassifyFailure(err) != bridge.FailureTimeout {
			t.Errorf("expired context: %v (%s), want a timeout", err, bridge.ClassifyFailure(err))
		}
	})
}

// TestFaultsKeepTheSet runs each fault through the reconcile loop: the
// published set stays, and the next good poll brings a scale-up.
func TestFaultsKeepTheSet(t *testing.T) {
	faults := []struct {
		name string
		set  func(w world)
	}{
		{"throttling", func(w world) {
			w.ecs.Set(func(s *ecstest.Server) { s.Fail = ecstest.Fault400("ThrottlingException", "Rate exceeded") })
		}},
		{"access denied", func(w world) {
			w.ecs.Set(func(s *ecstest.Server) { s.Fail = ecstest.Fault400("AccessDeniedException", "not authorized") })
		}},
		{"server exception on the third page", func(w world) {
			w.ecs.Set(func(s *ecstest.Server) {
				s.Fail = func(op string, n int) (int, string) {
					if op == "ListTasks" && n%3 == 0 {
						return 500, ecstest.ErrorBody("ServerException", "Service Unavailable.")
					}
					return 0, ""
				}
			})
		}},
		{"malformed answer", func(w world) {
			w.ecs.Set(func(s *ecstest.Server) { s.Fail = func(string, int) (int, string) { return 200, `{"taskArns":[` } })
		}},
		{"failures in DescribeTasks", func(w world) {
			w.ecs.Set(func(s *ecstest.Server) { s.Missing = []string{"b0000000000000000000000000000003"} })
		}},
		{"a task listed twice", func(w world) { w.ecs.Set(func(s *ecstest.Server) { s.Twice = true }) }},
		{"EC2 throttled for a new host", func(w world) {
			w.ec2.Set(func(f *ec2test.Server) {
				f.Fail = func(int, int) (int, string) {
					return 503, ec2test.ErrorXML("RequestLimitExceeded", "Request limit exceeded.")
				}
			})
			tasks, cis, _ := bridged(7, 5) // two more hosts to look up
			w.ecs.Set(func(s *ecstest.Server) { s.Tasks, s.ContainerInstances = tasks, cis })
		}},
	}
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			tasks, cis, instances := bridged(5, 3)
			_, _, all := bridged(7, 5)
			w := newWorld(t, tasks, cis, all)
			_ = instances
			w.ecs.PageSize = 2 // three pages
			p, _ := newProvider(t, w, service("web"), 4000)
			loop, rec, _ := bridgetest.NewLoop("ecs", p)
			loop.Poll(context.Background())
			if rec.Peers() != 5 {
				t.Fatalf("first poll published %d peers, want 5", rec.Peers())
			}
			fault.set(w)
			loop.Poll(context.Background())
			if rec.Peers() != 5 || loop.Status().LastError == "" {
				t.Fatalf("after the fault %d peers published (error %q), want the 5 kept", rec.Peers(), loop.Status().LastError)
			}
			// Recovered, with two more tasks: the next poll has them.
			tasks7, cis7, _ := bridged(7, 5)
			w.ecs.Set(func(s *ecstest.Server) {
				s.Fail, s.Missing, s.Twice, s.Tasks, s.ContainerInstances = nil, nil, false, tasks7, cis7
			})
			w.ec2.Set(func(f *ec2test.Server) { f.Fail = nil })
			loop.Poll(context.Background())
			if rec.Peers() != 7 {
				t.Fatalf("after recovery %d peers published, want 7 (%s)", rec.Peers(), loop.Status().LastError)
			}
			if st := loop.Status(); st.LastError != "" || st.Failures != 0 {
				t.Errorf("status after recovery: %+v", st)
			}
		})
	}
}

// TestTaskRole: credentials from the ECS agent's endpoint
// (AWS_CONTAINER_CREDENTIALS_FULL_URI with the authorization token from
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), as a task with a task role
// gets them; a failing API echoing every secret leaks none.
func TestTaskRole(t *testing.T) {
	const token = "Basic-EXAMPLEAUTHTOKENdGhpcyBpcyBub3QgYSByZWFs"
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != token {
			http.Error(w, `{"code":"AccessDenied","message":"bad token"}`, http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": bridgetest.AWSKeyID, "SecretAccessKey": bridgetest.AWSSecret, "Token": bridgetest.AWSSessionToken,
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339), "RoleArn": "arn:aws:iam::123456789012:role/peerbridge",
		})
	}))
	defer agent.Close()
	w := newWorld(t, fargate(3), nil, nil)
	awsEnv(t, w)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.URL + "/v2/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile,
	} {
		t.Setenv(k, v)
	}
	opts, err := Configure(service("web"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &bridgetest.Buffer{}
	opts.Logger = testLogger(logs)
	start := fmt.Sprintln(opts.LogAttrs()...)
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := p.Peers(context.Background())
	if err != nil || len(peers) != 3 {
		t.Fatalf("%d peers, %v", len(peers), err)
	}
	if !strings.Contains(start, "AWS_CONTAINER_CREDENTIALS_FULL_URI") || !strings.Contains(logs.String(), "credentials_source") {
		t.Errorf("start-up line %s\nlogs %s", start, logs)
	}

	// An API that echoes the request's secrets in its errors.
	loop := bridge.NewLoop(bridge.LoopConfig{
		Service:  bridge.Service{Topology: "web", Name: "web", Provider: "ecs"},
		Interval: time.Minute, Provider: p, Logger: testLogger(logs),
	})
	var errs []string
	for _, status := range []int{400, 403, 500} {
		w.ecs.Set(func(s *ecstest.Server) {
			s.Fail = func(string, int) (int, string) {
				h := s.Requests[len(s.Requests)-1].Header
				return status, ecstest.ErrorBody("AccessDeniedException", "token "+h.Get("X-Amz-Security-Token")+" secret "+
					bridgetest.AWSSecret+" auth "+token+" header "+h.Get("Authorization"))
			}
		})
		_, err := p.Peers(context.Background())
		if err == nil {
			t.Fatal("no error")
		}
		errs = append(errs, err.Error())
		loop.Poll(context.Background())
		errs = append(errs, loop.Status().LastError)
	}
	all := logs.String() + start + strings.Join(errs, "\n")
	if !strings.Contains(all, "[redacted]") {
		t.Errorf("the echoed secrets were not seen scrubbed:\n%s", all)
	}
	for _, secret := range []string{bridgetest.AWSSecret, bridgetest.AWSSessionToken, token} {
		if strings.Contains(all, secret) {
			t.Errorf("a secret leaked:\n%s", all)
		}
	}
}

// TestNoCredentials: a chain that finds none is a credentials failure
// on the first poll (New makes no request), naming what to set.
func TestNoCredentials(t *testing.T) {
	w := newWorld(t, fargate(1), nil, nil)
	awsEnv(t, w)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
	opts, err := Configure(service("web"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Peers(context.Background()); !errors.Is(err, bridge.ErrCredentials) || !strings.Contains(err.Error(), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
		t.Errorf("no credentials: %v", err)
	}
	if w.ecs.Count("") != 0 {
		t.Errorf("%d requests without credentials", w.ecs.Count(""))
	}
}
