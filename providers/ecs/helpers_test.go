package ecs

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/ec2/ec2test"
	"github.com/peerbridge/peerbridge/providers/ecs/ecstest"
)

const cluster = "prod"

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// world is an ECS cluster and the EC2 instances behind its container
// instances, both on loopback.
type world struct {
	ecs *ecstest.Server
	ec2 *ec2test.Server
}

func newWorld(t testing.TB, tasks []ecstest.Task, cis []ecstest.ContainerInstance, instances []ec2test.Instance) world {
	return world{ecs: ecstest.New(t, cluster, tasks, cis), ec2: ec2test.New(t, instances)}
}

// awsEnv points the SDK's default chain at w, with the static fake
// credentials and nothing of the machine's (no task role endpoint).
func awsEnv(t testing.TB, w world) {
	bridgetest.AWSEnv(t, w.ec2.URL())
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_ECS":                   w.ecs.URL(),
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN":      "",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
	} {
		t.Setenv(k, v)
	}
}

// newProvider configures a provider from env through Configure, as the
// command does, with the container port the command takes from
// PEERBRIDGE_PORT.
func newProvider(t testing.TB, w world, env Env, containerPort uint16) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	awsEnv(t, w)
	opts, err := Configure(env)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bridgetest.Buffer{}
	opts.Logger = testLogger(logs)
	opts.ContainerPort = containerPort
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}

func service(name string) Env { return Env{EcsCluster: cluster, EcsService: name} }

// fargate returns n running Fargate tasks of service web, addresses
// 10.1.x.y.
func fargate(n int) []ecstest.Task {
	out := make([]ecstest.Task, n)
	for i := range out {
		out[i] = ecstest.Task{
			ID: fmt.Sprintf("%032x", i), Service: "web", Family: "web", Revision: 3,
			IPv4: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), AZ: []string{"eu-west-1a", "eu-west-1b"}[i%2],
			Health: []types.HealthStatus{types.HealthStatusHealthy, types.HealthStatusUnknown}[i%2],
		}
	}
	return out
}

// bridged returns n running bridge-mode tasks of service web, spread over
// hosts container instances (ci0, ci1, ...) on instances i-h0, i-h1, ...
// (10.0.0.1, 10.0.0.2, ...); task i maps container port 4000 to host port
// 32768+i.
func bridged(n, hosts int) ([]ecstest.Task, []ecstest.ContainerInstance, []ec2test.Instance) {
	tasks := make([]ecstest.Task, n)
	for i := range tasks {
		tasks[i] = ecstest.Task{
			ID: fmt.Sprintf("b%031x", i), Service: "web", Family: "web", Revision: 7,
			ContainerInstance: fmt.Sprintf("ci%d", i%hosts), Bindings: [][2]int32{{9100, 40000 + int32(i)}, {4000, 32768 + int32(i)}},
		}
	}
	cis := make([]ecstest.ContainerInstance, hosts)
	instances := make([]ec2test.Instance, hosts)
	for h := range hosts {
		cis[h] = ecstest.ContainerInstance{ID: fmt.Sprintf("ci%d", h), EC2InstanceID: fmt.Sprintf("i-h%d", h)}
		instances[h] = ec2test.Instance{
			ID: fmt.Sprintf("i-h%d", h), Type: "m5.large", AZ: "eu-west-1a", VPC: "vpc-0aa",
			Private: fmt.Sprintf("10.0.%d.%d", h/250, h%250+1), IPv6: []string{fmt.Sprintf("2a05:d018::%x", h+1)},
		}
	}
	return tasks, cis, instances
}
