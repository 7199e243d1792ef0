package ec2

import (
	"context"
	"fmt"
	"testing"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/ec2/ec2test"
)

// The fake credentials, and where the fake stands.
const (
	testKeyID        = bridgetest.AWSKeyID
	testSecret       = bridgetest.AWSSecret
	testSessionToken = bridgetest.AWSSessionToken
	testRegion       = bridgetest.AWSRegion
	ec2Namespace     = ec2test.Namespace
)

// The EC2 stand-in is ec2test's, shared with the providers that read EC2
// too (ecs); these names keep the tests short.
type (
	instance = ec2test.Instance
	fakeEC2  = ec2test.Server
)

func newFakeEC2(t testing.TB, instances []instance) *fakeEC2 { return ec2test.New(t, instances) }

func errorXML(code, message string) string { return ec2test.ErrorXML(code, message) }

func awsEnv(t testing.TB, endpoint string) { bridgetest.AWSEnv(t, endpoint) }

// newProvider returns a provider reading the fake through the SDK's
// default chain, and the buffer its log goes to.
func newProvider(t testing.TB, f *fakeEC2, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	awsEnv(t, f.URL())
	logs := &bridgetest.Buffer{}
	opts.Logger = testLogger(logs)
	p, err := NewContext(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}

// makeInstances returns n running instances named web-0, web-1, ... with
// private addresses 10.0.x.y, spread over two zones, three to a
// reservation.
func makeInstances(n int) []instance {
	out := make([]instance, n)
	for i := range out {
		out[i] = instance{
			ID: fmt.Sprintf("i-%017x", i), Type: "t3.micro", AZ: []string{"eu-west-1a", "eu-west-1b"}[i%2],
			VPC: "vpc-0aa", Private: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
			Tags:        [][2]string{{"Name", fmt.Sprintf("web-%d", i)}, {"app", "web"}},
			Reservation: fmt.Sprintf("r-%017x", i/3),
		}
	}
	return out
}
