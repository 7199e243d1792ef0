package ecstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

func client(s *Server) *ecs.Client {
	return ecs.New(ecs.Options{
		Region: bridgetest.AWSRegion, BaseEndpoint: aws.String(s.URL()), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(bridgetest.AWSKeyID, bridgetest.AWSSecret, bridgetest.AWSSessionToken),
	})
}

func fixture(t *testing.T) *Server {
	return New(t, "prod", []Task{
		{ID: "a1", Service: "web", Family: "web", Revision: 4, IPv4: "10.0.1.1", IPv6: "2600:1f18::1", Health: types.HealthStatusHealthy},
		{ID: "b2", Service: "web", Family: "web", Revision: 4, ContainerInstance: "ci1", Bindings: [][2]int32{{4000, 32768}}},
		{ID: "c3", Service: "web", Family: "web", LastStatus: "STOPPED"},
	}, []ContainerInstance{{ID: "ci1", EC2InstanceID: "i-0a1"}})
}

// TestRoundTrip: what the fake answers is what the SDK's client reads,
// field for field: the fake's answers are the SDK's types, and its names
// the SDK's deserializer's.
func TestRoundTrip(t *testing.T) {
	s := fixture(t)
	c := client(s)
	ctx := context.Background()
	list, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("prod"), ServiceName: aws.String("web"), MaxResults: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list.TaskArns, []string{s.TaskARN("a1")}) || aws.ToString(list.NextToken) == "" {
		t.Fatalf("first page %v, next %q", list.TaskArns, aws.ToString(list.NextToken))
	}
	desc, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(s.ClusterARN()), Tasks: []string{s.TaskARN("a1"), "b2", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a1", "b2"} {
		want, _ := s.byRef(id)
		if !reflect.DeepEqual(desc.Tasks[i], s.SDKTask(want)) {
			t.Errorf("task %s through the SDK:\n got %+v\nwant %+v", id, desc.Tasks[i], s.SDKTask(want))
		}
	}
	if len(desc.Failures) != 1 || aws.ToString(desc.Failures[0].Reason) != "MISSING" {
		t.Errorf("failures %+v", desc.Failures)
	}
	cis, err := c.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String("prod"), ContainerInstances: []string{"ci1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cis.ContainerInstances, []types.ContainerInstance{s.SDKContainerInstance(s.ContainerInstances[0])}) {
		t.Errorf("container instances %+v", cis.ContainerInstances)
	}
	for _, r := range s.RequestLog() {
		if !sigV4.MatchString(r.Header.Get("Authorization")) || r.Header.Get("X-Amz-Security-Token") != bridgetest.AWSSessionToken {
			t.Errorf("%s: not signed as expected: %v", r.Operation, r.Header)
		}
	}
}

// TestErrors: ECS's error answers reach the SDK with their codes, and
// requests the fake would not take are refused as ECS refuses them.
func TestErrors(t *testing.T) {
	s := fixture(t)
	c := client(s)
	ctx := context.Background()
	for _, tc := range []struct {
		code string
		call func() error
	}{
		{"ClusterNotFoundException", func() error {
			_, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("other")})
			return err
		}},
		{"InvalidParameterException", func() error {
			_, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("prod"), MaxResults: aws.Int32(101)})
			return err
		}},
		{"InvalidParameterException", func() error {
			_, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("prod"), Tasks: make([]string, 101)})
			return err
		}},
		{"ThrottlingException", func() error {
			s.Set(func(s *Server) { s.Fail = Fault400("ThrottlingException", "Rate exceeded") })
			defer s.Set(func(s *Server) { s.Fail = nil })
			_, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("prod")})
			return err
		}},
		{"UnrecognizedClientException", func() error {
			other := ecs.New(ecs.Options{Region: bridgetest.AWSRegion, BaseEndpoint: aws.String(s.URL()),
				Credentials: credentials.NewStaticCredentialsProvider("AKIDOTHER", "x", "")})
			_, err := other.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("prod")})
			return err
		}},
	} {
		var ae smithy.APIError
		if err := tc.call(); !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
			t.Errorf("got %v, want %s", err, tc.code)
		}
	}
}

// TestRequestNames: the fake's request structs carry the JSON names the
// SDK's serializer writes, every one of them (decoded strictly).
func TestRequestNames(t *testing.T) {
	proto := awsjson.New11(schemas.AmazonEC2ContainerServiceV20141113)
	for _, tc := range []struct {
		op, shape *smithy.Schema
		in        smithy.Serializable
		into      any
		want      any
	}{
		{schemas.ListTasks, schemas.ListTasksRequest, &ecs.ListTasksInput{
			Cluster: aws.String("c"), ContainerInstance: aws.String("ci"), Family: aws.String("f"), NextToken: aws.String("n"),
			MaxResults: aws.Int32(7), StartedBy: aws.String("s"), ServiceName: aws.String("svc"),
			DesiredStatus: types.DesiredStatusRunning, LaunchType: types.LaunchTypeFargate,
		}, &listTasksRequest{}, &listTasksRequest{Cluster: "c", ContainerInstance: "ci", Family: "f", NextToken: "n",
			MaxResults: aws.Int(7), StartedBy: "s", ServiceName: "svc", DesiredStatus: "RUNNING", LaunchType: "FARGATE"}},
		{schemas.DescribeTasks, schemas.DescribeTasksRequest, &ecs.DescribeTasksInput{
			Cluster: aws.String("c"), Tasks: []string{"t"}, Include: []types.TaskField{types.TaskFieldTags},
		}, &describeTasksRequest{}, &describeTasksRequest{Cluster: "c", Tasks: []string{"t"}, Include: []string{"TAGS"}}},
		{schemas.DescribeContainerInstances, schemas.DescribeContainerInstancesRequest, &ecs.DescribeContainerInstancesInput{
			Cluster: aws.String("c"), ContainerInstances: []string{"ci"}, Include: []types.ContainerInstanceField{types.ContainerInstanceFieldTags},
		}, &describeContainerInstancesRequest{}, &describeContainerInstancesRequest{Cluster: "c", ContainerInstances: []string{"ci"}, Include: []string{"TAGS"}}},
	} {
		body, err := Encode(proto, tc.op, tc.shape, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		if err := d.Decode(tc.into); err != nil || !reflect.DeepEqual(tc.into, tc.want) {
			t.Errorf("%s: %s decoded as %+v, %v; want %+v", tc.op.ID().Name, body, tc.into, err, tc.want)
		}
	}
}
