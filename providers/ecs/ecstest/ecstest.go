// Package ecstest is a stand-in for Amazon ECS's API on loopback, for
// tests that read it through the AWS SDK: ListTasks, DescribeTasks and
// DescribeContainerInstances over the awsJson1_1 protocol (a POST with
// X-Amz-Target AmazonEC2ContainerServiceV20141113.<Operation>), signed
// with SigV4, paged by maxResults and nextToken, with ECS's error
// answers (a JSON __type and message, HTTP 400 for client errors
// throttling included, 500 for server faults).
//
// Answers are the SDK's own output types (types.Task, ...) serialised by
// the SDK's own awsJson codec, so every field name is the one the SDK's
// deserializer reads.
package ecstest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
	"github.com/peerbridge/peerbridge/providers/ec2/ec2test"
)

// Where the fake stands.
const (
	Account      = "123456789012"
	TargetPrefix = "AmazonEC2ContainerServiceV20141113."
)

// Task is one task of the fake cluster.
type Task struct {
	ID string
	// Service names the service that started it ("" for a task run by
	// hand); Family and Revision its task definition.
	Service, Family string
	Revision        int
	// LastStatus is RUNNING unless set; DesiredStatus is RUNNING unless
	// set, or STOPPED when LastStatus is.
	LastStatus, DesiredStatus string
	// Health is UNKNOWN unless set (no container health check).
	Health types.HealthStatus
	AZ     string
	// IPv4 and IPv6 make it an awsvpc task (Fargate when
	// ContainerInstance is empty): its ENI's addresses.
	IPv4, IPv6 string
	// ContainerInstance (an id) places it on an EC2 container instance;
	// without IPv4 it is a bridge task with Bindings
	// (containerPort, hostPort).
	ContainerInstance string
	Bindings          [][2]int32
}

// ContainerInstance is an EC2 container instance: its id and the EC2
// instance (in ec2test) it is.
type ContainerInstance struct {
	ID, EC2InstanceID string
}

// Request is one request as the fake received it.
type Request struct {
	Operation string
	Body      []byte
	Header    http.Header
}

// Server answers as ECS does for one cluster.
//
// The exported fields may be changed under Set once the server runs.
type Server struct {
	t       testing.TB
	srv     *httptest.Server
	cluster string
	proto   *awsjson.Protocol

	mu                 sync.Mutex
	Tasks              []Task
	ContainerInstances []ContainerInstance
	// PageSize caps a ListTasks page below maxResults; 0: maxResults.
	PageSize int
	Requests []Request
	// Fail, when it returns a status, answers the n-th request (from 1)
	// for operation with it and body instead. It runs under the lock.
	Fail func(operation string, n int) (status int, body string)
	// Missing tasks and container instances (ids) are described as
	// failures (reason MISSING), as after they were forgotten.
	Missing []string
	// Twice lists the first task on two pages (a listing that moved).
	Twice bool
}

// New starts a fake of the cluster named cluster; the test's cleanup
// stops it.
func New(t testing.TB, cluster string, tasks []Task, cis []ContainerInstance) *Server {
	s := &Server{t: t, cluster: cluster, proto: awsjson.New11(schemas.AmazonEC2ContainerServiceV20141113),
		Tasks: tasks, ContainerInstances: cis}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the endpoint, for AWS_ENDPOINT_URL_ECS.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Set changes the server's state under its lock.
func (s *Server) Set(fn func(s *Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// Count returns how many requests for operation ("" for all) it got.
func (s *Server) Count(operation string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.Requests {
		if operation == "" || r.Operation == operation {
			n++
		}
	}
	return n
}

// RequestLog returns the requests so far.
func (s *Server) RequestLog() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.Requests)
}

// ClusterARN, TaskARN and ContainerInstanceARN are the fake's ARNs.
func (s *Server) ClusterARN() string { return arn("cluster/" + s.cluster) }

// TaskARN is a task's ARN in the new (long) format, with the cluster.
func (s *Server) TaskARN(id string) string { return arn("task/" + s.cluster + "/" + id) }

// ContainerInstanceARN is a container instance's ARN.
func (s *Server) ContainerInstanceARN(id string) string {
	return arn("container-instance/" + s.cluster + "/" + id)
}

func arn(resource string) string {
	return "arn:aws:ecs:" + bridgetest.AWSRegion + ":" + Account + ":" + resource
}

var sigV4 = ec2test.SigV4("ecs")

// The requests the fake reads. Their JSON names are checked against the
// SDK's serializer in this package's tests.
type listTasksRequest struct {
	Cluster           string `json:"cluster"`
	ContainerInstance string `json:"containerInstance"`
	Family            string `json:"family"`
	NextToken         string `json:"nextToken"`
	MaxResults        *int   `json:"maxResults"`
	StartedBy         string `json:"startedBy"`
	ServiceName       string `json:"serviceName"`
	DesiredStatus     string `json:"desiredStatus"`
	LaunchType        string `json:"launchType"`
}

type describeTasksRequest struct {
	Cluster string   `json:"cluster"`
	Tasks   []string `json:"tasks"`
	Include []string `json:"include"`
}

type describeContainerInstancesRequest struct {
	Cluster            string   `json:"cluster"`
	ContainerInstances []string `json:"containerInstances"`
	Include            []string `json:"include"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		Fault(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, TargetPrefix)
	s.Requests = append(s.Requests, Request{Operation: op, Body: body, Header: r.Header.Clone()})
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-amz-json-1.1":
		Fault(w, http.StatusBadRequest, "SerializationException", "Start of structure or map found where not expected.")
		return
	case !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+bridgetest.AWSKeyID+"/"):
		Fault(w, http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	case !sigV4.MatchString(r.Header.Get("Authorization")) || r.Header.Get("X-Amz-Date") == "":
		Fault(w, http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided.")
		return
	case !ok:
		Fault(w, http.StatusBadRequest, "UnknownOperationException", "")
		return
	}
	if s.Fail != nil {
		if status, b := s.Fail(op, s.count(op)); status != 0 {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(status)
			io.WriteString(w, b)
			return
		}
	}
	switch op {
	case "ListTasks":
		var in listTasksRequest
		if s.decode(w, body, &in) {
			s.listTasks(w, in)
		}
	case "DescribeTasks":
		var in describeTasksRequest
		if s.decode(w, body, &in) {
			s.describeTasks(w, in)
		}
	case "DescribeContainerInstances":
		var in describeContainerInstancesRequest
		if s.decode(w, body, &in) {
			s.describeContainerInstances(w, in)
		}
	default:
		Fault(w, http.StatusBadRequest, "UnknownOperationException", "")
	}
}

// count is Count under the lock already held.
func (s *Server) count(op string) int {
	n := 0
	for _, r := range s.Requests {
		if r.Operation == op {
			n++
		}
	}
	return n
}

// decode reads a request body strictly: a field the fake does not know
// is a field the SDK would not send.
func (s *Server) decode(w http.ResponseWriter, body []byte, v any) bool {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		Fault(w, http.StatusBadRequest, "SerializationException", err.Error())
		return false
	}
	return true
}

func (s *Server) clusterOK(w http.ResponseWriter, c string) bool {
	if c == "" {
		c = "default"
	}
	if c != s.cluster && c != s.ClusterARN() {
		Fault(w, http.StatusBadRequest, "ClusterNotFoundException", "Cluster not found.")
		return false
	}
	return true
}

func (t Task) lastStatus() string { return cmpOr(t.LastStatus, "RUNNING") }

func (t Task) desiredStatus() string {
	if t.DesiredStatus != "" {
		return t.DesiredStatus
	}
	if t.lastStatus() == "STOPPED" || t.lastStatus() == "DEPROVISIONING" {
		return "STOPPED"
	}
	return "RUNNING"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) listTasks(w http.ResponseWriter, in listTasksRequest) {
	if !s.clusterOK(w, in.Cluster) {
		return
	}
	size := 100
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 100 {
			Fault(w, http.StatusBadRequest, "InvalidParameterException", "maxResults must be between 1 and 100.")
			return
		}
		size = *in.MaxResults
	}
	if in.ServiceName != "" && in.Family != "" {
		Fault(w, http.StatusBadRequest, "InvalidParameterException", "Family and ServiceName cannot both be specified.")
		return
	}
	if s.PageSize > 0 {
		size = min(size, s.PageSize)
	}
	desired := cmpOr(in.DesiredStatus, "RUNNING")
	service := in.ServiceName[strings.LastIndexByte(in.ServiceName, '/')+1:]
	var arns []string
	for _, t := range s.Tasks {
		if t.desiredStatus() != desired || (service != "" && t.Service != service) || (in.Family != "" && t.Family != in.Family) {
			continue
		}
		arns = append(arns, s.TaskARN(t.ID))
	}
	if s.Twice && len(arns) > size {
		arns = slices.Insert(arns, size, arns[0])
	}
	offset := 0
	if in.NextToken != "" {
		var err error
		offset, err = strconv.Atoi(strings.TrimPrefix(in.NextToken, "tok-"))
		if err != nil || !strings.HasPrefix(in.NextToken, "tok-") || offset > len(arns) {
			Fault(w, http.StatusBadRequest, "InvalidParameterException", "Invalid token "+in.NextToken)
			return
		}
	}
	end := min(offset+size, len(arns))
	out := &ecs.ListTasksOutput{TaskArns: slices.Clone(arns[offset:end])}
	if end < len(arns) {
		out.NextToken = aws.String("tok-" + strconv.Itoa(end))
	}
	s.reply(w, schemas.ListTasks, schemas.ListTasksResponse, out)
}

// byRef finds a task by ARN or id.
func (s *Server) byRef(ref string) (Task, bool) {
	for _, t := range s.Tasks {
		if ref == t.ID || ref == s.TaskARN(t.ID) {
			return t, true
		}
	}
	return Task{}, false
}

func (s *Server) describeTasks(w http.ResponseWriter, in describeTasksRequest) {
	if !s.clusterOK(w, in.Cluster) {
		return
	}
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		Fault(w, http.StatusBadRequest, "InvalidParameterException", "Tasks cannot be empty and can have at most 100 items.")
		return
	}
	out := &ecs.DescribeTasksOutput{Tasks: []types.Task{}, Failures: []types.Failure{}}
	for _, ref := range in.Tasks {
		t, ok := s.byRef(ref)
		if !ok || slices.Contains(s.Missing, t.ID) {
			out.Failures = append(out.Failures, types.Failure{Arn: aws.String(ref), Reason: aws.String("MISSING")})
			continue
		}
		out.Tasks = append(out.Tasks, s.SDKTask(t))
	}
	s.reply(w, schemas.DescribeTasks, schemas.DescribeTasksResponse, out)
}

func (s *Server) describeContainerInstances(w http.ResponseWriter, in describeContainerInstancesRequest) {
	if !s.clusterOK(w, in.Cluster) {
		return
	}
	if len(in.ContainerInstances) == 0 || len(in.ContainerInstances) > 100 {
		Fault(w, http.StatusBadRequest, "InvalidParameterException", "ContainerInstances cannot be empty and can have at most 100 items.")
		return
	}
	out := &ecs.DescribeContainerInstancesOutput{ContainerInstances: []types.ContainerInstance{}, Failures: []types.Failure{}}
	for _, ref := range in.ContainerInstances {
		i := slices.IndexFunc(s.ContainerInstances, func(ci ContainerInstance) bool {
			return ref == ci.ID || ref == s.ContainerInstanceARN(ci.ID)
		})
		if i < 0 || slices.Contains(s.Missing, s.ContainerInstances[i].ID) {
			out.Failures = append(out.Failures, types.Failure{Arn: aws.String(ref), Reason: aws.String("MISSING")})
			continue
		}
		out.ContainerInstances = append(out.ContainerInstances, s.SDKContainerInstance(s.ContainerInstances[i]))
	}
	s.reply(w, schemas.DescribeContainerInstances, schemas.DescribeContainerInstancesResponse, out)
}

// started is when every fake task started: a fixed UTC time to the
// millisecond, as ECS's epoch-seconds timestamps carry it.
var started = time.Date(2026, 3, 1, 12, 0, 0, 250_000_000, time.UTC)

// SDKTask is t as ECS describes it.
func (s *Server) SDKTask(t Task) types.Task {
	health := cmpOr(string(t.Health), string(types.HealthStatusUnknown))
	group := "family:" + t.Family
	if t.Service != "" {
		group = "service:" + t.Service
	}
	rev := max(t.Revision, 1)
	out := types.Task{
		TaskArn:           aws.String(s.TaskARN(t.ID)),
		ClusterArn:        aws.String(s.ClusterARN()),
		TaskDefinitionArn: aws.String(arn("task-definition/" + t.Family + ":" + strconv.Itoa(rev))),
		Group:             aws.String(group),
		LastStatus:        aws.String(t.lastStatus()),
		DesiredStatus:     aws.String(t.desiredStatus()),
		HealthStatus:      types.HealthStatus(health),
		AvailabilityZone:  aws.String(cmpOr(t.AZ, bridgetest.AWSRegion+"a")),
		Cpu:               aws.String("256"),
		Memory:            aws.String("512"),
		Connectivity:      types.ConnectivityConnected,
		CreatedAt:         aws.Time(started.Add(-time.Minute)),
		Version:           3,
		Tags:              []types.Tag{{Key: aws.String("app"), Value: aws.String(t.Family)}},
	}
	if t.lastStatus() == "RUNNING" {
		out.StartedAt = aws.Time(started)
	}
	if t.Service != "" {
		out.StartedBy = aws.String("ecs-svc/1234567890123456789")
	}
	container := types.Container{
		ContainerArn: aws.String(arn("container/" + s.cluster + "/" + t.ID + "/0f0e0d0c")),
		TaskArn:      out.TaskArn,
		Name:         aws.String("app"),
		Image:        aws.String("ghcr.io/example/app:1"),
		LastStatus:   aws.String(t.lastStatus()),
		HealthStatus: types.HealthStatus(health),
	}
	if t.IPv4 != "" || t.IPv6 != "" {
		eniID := "eni-" + t.ID[:min(len(t.ID), 8)]
		details := []types.KeyValuePair{
			{Name: aws.String("subnetId"), Value: aws.String("subnet-0a1b2c3d")},
			{Name: aws.String("networkInterfaceId"), Value: aws.String(eniID)},
			{Name: aws.String("macAddress"), Value: aws.String("0a:1b:2c:3d:4e:5f")},
			{Name: aws.String("privateDnsName"), Value: aws.String("ip-" + strings.ReplaceAll(t.IPv4, ".", "-") + ".ec2.internal")},
		}
		if t.IPv4 != "" {
			details = append(details, types.KeyValuePair{Name: aws.String("privateIPv4Address"), Value: aws.String(t.IPv4)})
		}
		if t.IPv6 != "" {
			details = append(details, types.KeyValuePair{Name: aws.String("ipv6Address"), Value: aws.String(t.IPv6)})
		}
		out.Attachments = []types.Attachment{{
			Id: aws.String("att-" + t.ID), Type: aws.String("ElasticNetworkInterface"), Status: aws.String("ATTACHED"), Details: details,
		}}
		container.NetworkInterfaces = []types.NetworkInterface{{
			AttachmentId: aws.String("att-" + t.ID), PrivateIpv4Address: aws.String(t.IPv4),
		}}
		if t.IPv6 != "" {
			container.NetworkInterfaces[0].Ipv6Address = aws.String(t.IPv6)
		}
	}
	if t.ContainerInstance == "" {
		out.LaunchType = types.LaunchTypeFargate
		out.PlatformVersion = aws.String("1.4.0")
		out.PlatformFamily = aws.String("Linux")
	} else {
		out.LaunchType = types.LaunchTypeEc2
		out.ContainerInstanceArn = aws.String(s.ContainerInstanceARN(t.ContainerInstance))
		for _, b := range t.Bindings {
			container.NetworkBindings = append(container.NetworkBindings, types.NetworkBinding{
				BindIP: aws.String("0.0.0.0"), ContainerPort: aws.Int32(b[0]), HostPort: aws.Int32(b[1]),
				Protocol: types.TransportProtocolTcp,
			})
		}
	}
	out.Containers = []types.Container{container}
	return out
}

// SDKContainerInstance is ci as ECS describes it.
func (s *Server) SDKContainerInstance(ci ContainerInstance) types.ContainerInstance {
	return types.ContainerInstance{
		ContainerInstanceArn: aws.String(s.ContainerInstanceARN(ci.ID)),
		Ec2InstanceId:        aws.String(ci.EC2InstanceID),
		Status:               aws.String("ACTIVE"),
		AgentConnected:       true,
		RunningTasksCount:    1,
		RegisteredAt:         aws.Time(started.Add(-time.Hour)),
		Version:              7,
		VersionInfo:          &types.VersionInfo{AgentVersion: aws.String("1.89.0"), DockerVersion: aws.String("25.0.8")},
	}
}

// reply writes out with the SDK's own awsJson codec: the serializer the
// SDK's snapshot tests use for responses.
func (s *Server) reply(w http.ResponseWriter, op, response *smithy.Schema, out smithy.Serializable) {
	body, err := Encode(s.proto, op, response, out)
	if err != nil {
		s.t.Errorf("fake ECS: %v", err)
		Fault(w, http.StatusInternalServerError, "ServerException", "encoding")
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "8f1e7f3a-0d1c-4b9a-9c1e-example")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// Encode serialises v (an operation's output, or input) with the SDK's
// awsJson codec.
func Encode(proto *awsjson.Protocol, op, shape *smithy.Schema, v smithy.Serializable) ([]byte, error) {
	req := smithyhttp.NewStackRequest().(*smithyhttp.Request)
	if err := proto.SerializeRequest(context.Background(), smithy.NewOperationSchema(op, shape, shape), v, req); err != nil {
		return nil, err
	}
	built := req.Build(context.Background())
	if built.Body == nil {
		return []byte("{}"), nil
	}
	return io.ReadAll(built.Body)
}

// Fault writes an ECS error answer: __type is the code, HTTP 400 for
// client errors (throttling and access too), 500 for server faults.
func Fault(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "8f1e7f3a-0d1c-4b9a-9c1e-example")
	w.WriteHeader(status)
	io.WriteString(w, ErrorBody(code, message))
}

// ErrorBody is ECS's JSON error body.
func ErrorBody(code, message string) string {
	b, _ := json.Marshal(map[string]string{"__type": code, "message": message})
	return string(b)
}

// Fault400 is a Server.Fail that answers every request with HTTP 400
// and code, as ECS sends throttling and access errors.
func Fault400(code, message string) func(string, int) (int, string) {
	return func(string, int) (int, string) { return http.StatusBadRequest, ErrorBody(code, message) }
}
