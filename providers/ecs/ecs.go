// Package ecs provides the peers of a cluster from Amazon ECS: the
// running, healthy tasks of one service or one task definition family,
// Fargate and EC2 launch types alike, read by one poller instead of every
// task asking the API with a role of its own.
//
// Everything AWS-specific is the SDK's (github.com/aws/aws-sdk-go-v2 and
// its service/ecs and service/ec2): the default chain of credentials
// (the ECS task role included), region and endpoints, SigV4 signing, the
// awsJson1_1 protocol. This package lists every page of ListTasks,
// describes the tasks in batches, finds each task's address (its ENI for
// awsvpc tasks, its container instance's EC2 instance for bridge and host
// tasks) and port, and sorts the SDK's errors for the reconcile loop.
//
// # Ports
//
// A bridge-mode task's port on its host is chosen by Docker (a dynamic
// host port), so each task has a port of its own, which is published as
// bridge.Peer.Port. Options.ContainerPort is the container's port, the
// one the command reads from PEERBRIDGE_PORT: the peer's port is the host
// port of the mapping whose containerPort is that port. For the command's
// PortFor to publish it, an ecs topology's bridge.Service.Port stays 0:
// PEERBRIDGE_PORT names the container port here, and every task's own
// port follows from it (for awsvpc and host tasks it is the container
// port itself). Without a container port, peers carry no port.
package ecs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/awsapi"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:          "ecs",
	Summary:       "Amazon ECS tasks (Fargate and EC2) of a service or task definition family",
	Metered:       false,
	ContainerPort: true,
	VendorVars: []string{
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS", "AWS_ENDPOINT_URL_EC2",
	},
	Attrs: []string{
		"task_arn", "group", "availability_zone", "launch_type", "family", "revision", "container_instance",
	},
}

// Env is the provider's environment spec, read with envconfig under
// PEERBRIDGE_ (and per topology under PEERBRIDGE_<TOPOLOGY>_).
type Env struct {
	EcsCluster string `split_words:"true" desc:"the ECS cluster, by name or ARN (required)"`
	EcsService string `split_words:"true" desc:"the service whose tasks are the peers (or ECS_FAMILY)"`
	EcsFamily  string `split_words:"true" desc:"the task definition family whose tasks are the peers (or ECS_SERVICE)"`
	EcsAddress string `split_words:"true" default:"private" desc:"private (IPv4) or ipv6: the task's ENI address, or for bridge and host tasks the instance's"`
}

// Address is the kind of address published for a task.
type Address string

// The addresses a task may have.
const (
	Private Address = "private"
	IPv6    Address = "ipv6"
)

// ParseAddress reads "private" or "ipv6".
func ParseAddress(s string) (Address, error) {
	switch a := Address(strings.ToLower(strings.TrimSpace(s))); a {
	case "", Private:
		return Private, nil
	case IPv6:
		return a, nil
	}
	return "", bridge.Invalid("ECS_ADDRESS", "%q is not private or ipv6", s)
}

// Options configure a provider.
type Options struct {
	// Cluster is the cluster's name or ARN.
	Cluster string
	// Service or Family (exactly one) selects the tasks.
	Service, Family string
	// Address is the address published; empty means Private.
	Address Address
	// ContainerPort is the container's port (the command's
	// PEERBRIDGE_PORT): a bridge task's peer port is the host port mapped
	// to it, an awsvpc or host task's is the port itself. Zero: peers
	// carry no port of their own.
	ContainerPort uint16
	// AWS is the SDK's configuration, as Configure loads it.
	AWS *aws.Config
	// CredentialSource says where the chain finds credentials, for the
	// start-up line (never a secret).
	CredentialSource string
	Logger           *slog.Logger
}

// clusterRE is a cluster name (up to 255 letters, digits, hyphens and
// underscores) or a cluster ARN; familyRE a task definition family;
// serviceRE a service name or ARN.
var (
	clusterRE = regexp.MustCompile(`^([A-Za-z0-9_-]{1,255}|arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:cluster/[A-Za-z0-9_-]{1,255})$`)
	serviceRE = regexp.MustCompile(`^([A-Za-z0-9_-]{1,255}|arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:service/([A-Za-z0-9_-]{1,255}/)?[A-Za-z0-9_-]{1,255})$`)
	familyRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

// Configure turns the variables into validated options, with the SDK's
// configuration loaded from the default chain (environment and local
// files; no request). Every problem is reported, joined.
func Configure(env Env) (Options, error) {
	var errs []error
	opts := Options{
		Cluster: strings.TrimSpace(env.EcsCluster),
		Service: strings.TrimSpace(env.EcsService),
		Family:  strings.TrimSpace(env.EcsFamily),
	}
	switch {
	case opts.Cluster == "":
		errs = append(errs, bridge.Invalid("ECS_CLUSTER", "required: the cluster's name or ARN"))
	case !clusterRE.MatchString(opts.Cluster):
		errs = append(errs, bridge.Invalid("ECS_CLUSTER", "%q is not a cluster name (letters, digits, - and _) or cluster ARN", opts.Cluster))
	}
	switch {
	case opts.Service != "" && opts.Family != "":
		errs = append(errs, bridge.Invalid("ECS_SERVICE", "set ECS_SERVICE or ECS_FAMILY, not both"))
	case opts.Service == "" && opts.Family == "":
		errs = append(errs, bridge.Invalid("ECS_SERVICE", "set ECS_SERVICE (a service's tasks) or ECS_FAMILY (a task definition family's tasks)"))
	case opts.Service != "" && !serviceRE.MatchString(opts.Service):
		errs = append(errs, bridge.Invalid("ECS_SERVICE", "%q is not a service name or ARN", opts.Service))
	case opts.Family != "" && !familyRE.MatchString(opts.Family):
		errs = append(errs, bridge.Invalid("ECS_FAMILY", "%q is not a task definition family (letters, digits, - and _)", opts.Family))
	}
	addr, err := ParseAddress(env.EcsAddress)
	if err != nil {
		errs = append(errs, err)
	}
	opts.Address = addr
	for _, v := range []string{"AWS_ENDPOINT_URL_ECS", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"} {
		if raw := os.Getenv(v); raw != "" {
			if err := platform.CheckURL(v, raw); err != nil {
				errs = append(errs, &bridge.VariableError{Variable: v, Err: errors.Unwrap(err)})
			}
		}
	}
	if cfg, err := awsapi.LoadConfig(context.Background()); err != nil {
		errs = append(errs, &bridge.VariableError{Variable: vendorVariable(err), Err: err})
	} else {
		opts.AWS = &cfg
	}
	opts.CredentialSource = awsapi.CredentialSource()
	return opts, errors.Join(errs...)
}

// vendorVariable names the variable a configuration error is about: the
// first of the chain's variables its text names, else AWS_CONFIG_FILE
// (the shared files are what LoadDefaultConfig reads besides them).
func vendorVariable(err error) string {
	if errors.Is(err, awsapi.ErrNoRegion) {
		return "AWS_REGION"
	}
	for _, v := range Info.VendorVars {
		if strings.Contains(err.Error(), v) {
			return v
		}
	}
	if os.Getenv("AWS_PROFILE") != "" {
		return "AWS_PROFILE"
	}
	return "AWS_CONFIG_FILE"
}

// LogAttrs are the settings for the start-up log line: where credentials
// come from, never what they are.
func (o Options) LogAttrs() []any {
	attrs := []any{"cluster", o.Cluster}
	if o.Service != "" {
		attrs = append(attrs, "service", o.Service)
	} else {
		attrs = append(attrs, "family", o.Family)
	}
	attrs = append(attrs, "address", cmp.Or(o.Address, Private), "container_port", o.ContainerPort,
		"credentials", cmp.Or(o.CredentialSource, "default chain"))
	if o.AWS != nil {
		attrs = append(attrs, "region", o.AWS.Region)
	}
	for _, v := range []string{"AWS_ENDPOINT_URL_ECS", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"} {
		if e := os.Getenv(v); e != "" {
			attrs = append(attrs, strings.ToLower(strings.TrimPrefix(v, "AWS_")), e)
		}
	}
	return attrs
}

// maxBody caps an answer: a DescribeTasks page of 100 tasks with their
// containers is a few hundred kilobytes; a DescribeInstances answer for
// 100 instances less.
const maxBody = 32 << 20

// Provider lists a topology's tasks.
type Provider struct {
	opts     Options
	ecs      ecsAPI
	ec2      ec2.DescribeInstancesAPIClient
	creds    aws.CredentialsProvider
	log      *slog.Logger
	skips    *platform.Skips
	requests atomic.Int64
	secrets  awsapi.Secrets

	// mu serialises polls: the caches belong to one poll at a time.
	mu          sync.Mutex
	credsLogged bool
	// instanceOf caches a container instance ARN's EC2 instance id
	// (fixed for its life) and addrOf an instance's addresses, both
	// pruned to what the last good poll used: an ARN seen anew is looked
	// up, one gone is forgotten.
	instanceOf map[string]string
	addrOf     map[string]instanceAddrs
	// pages remembers the DescribeTasks answers of the last complete
	// listing; decoded counts the answers decoded (not found unchanged),
	// for tests.
	pages   *platform.Pages[*taskPage]
	decoded atomic.Int64
}

// ecsAPI is what the provider asks ECS.
type ecsAPI interface {
	ecs.ListTasksAPIClient
	DescribeTasks(ctx context.Context, in *ecs.DescribeTasksInput, opts ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error)
	DescribeContainerInstances(ctx context.Context, in *ecs.DescribeContainerInstancesInput, opts ...func(*ecs.Options)) (*ecs.DescribeContainerInstancesOutput, error)
}

// New builds the provider; it makes no request. Credentials are fetched
// on the first poll, when the SDK first needs them.
func New(opts Options) (*Provider, error) {
	if opts.Cluster == "" || (opts.Service == "") == (opts.Family == "") {
		return nil, errors.New("ecs: a cluster and exactly one of service or family are required")
	}
	if opts.Address == "" {
		opts.Address = Private
	}
	if _, err := ParseAddress(string(opts.Address)); err != nil {
		return nil, err
	}
	if opts.AWS == nil {
		return nil, errors.New("ecs: no AWS configuration (Configure loads it)")
	}
	cfg := opts.AWS.Copy()
	if cfg.Credentials == nil {
		return nil, errors.New("ecs: no AWS credentials provider")
	}
	log := platform.Logger(opts.Logger)
	p := &Provider{
		opts: opts, creds: cfg.Credentials, log: log, skips: platform.NewSkips(log),
		instanceOf: map[string]string{}, addrOf: map[string]instanceAddrs{},
		pages: platform.NewPages[*taskPage](),
	}
	// The loop is the retryer: one attempt per request, so requests per
	// poll are pages and batches, a throttled account gets no extra calls
	// (the loop backs off), and no SDK backoff can outlast the poll's
	// timeout. Request logging would write signed headers to stderr.
	p.ecs = ecs.NewFromConfig(cfg, func(o *ecs.Options) {
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		o.ClientLogMode = 0
		// Unchanged answers are recognised above the cap, so what is
		// read is capped.
		o.HTTPClient = awsapi.SkipUnchanged(awsapi.HTTPClient(o.HTTPClient, &p.requests, maxBody))
	})
	p.ec2 = ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 0
		o.ClientLogMode = 0
		o.HTTPClient = awsapi.HTTPClient(o.HTTPClient, &p.requests, maxBody)
	})
	return p, nil
}

// Requests returns the number of API requests (ECS and EC2) made so far.
func (p *Provider) Requests() int64 { return p.requests.Load() }

// Skipped returns the number of tasks skipped so far for want of an
// address or host port (counted on every poll).
func (p *Provider) Skipped() int64 { return p.skips.Total() }

// containerToken is the ECS task role's authorization token, when given
// in the environment: a secret to scrub as much as the keys.
func containerToken() []string {
	var out []string
	if t := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"); t != "" {
		out = append(out, t)
	}
	if f := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); f != "" {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "" {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// Peers lists every task of the service or family and returns the
// running, healthy ones with an address. Any failure fails the whole
// poll: a partial listing is never a peer set.
func (p *Provider) Peers(ctx context.Context) ([]bridge.Peer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	peers, err := p.poll(ctx)
	if err != nil {
		return nil, p.secrets.Scrub(ctx, p.creds, err, containerToken()...)
	}
	p.skips.PollDone()
	return peers, nil
}

// credentials fetches the credentials (the SDK's cache answers without a
// request unless they expire), remembers their secrets for scrubbing,
// and logs where they came from the first time.
func (p *Provider) credentials(ctx context.Context) error {
	creds, err := p.creds.Retrieve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "+
			"or run with a task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI), web identity or instance role: %w",
			bridge.ErrCredentials, err)
	}
	p.secrets.Note(creds, containerToken()...)
	if !p.credsLogged {
		p.credsLogged = true
		attrs := []any{"credentials_source", creds.Source}
		if creds.CanExpire {
			attrs = append(attrs, "credentials_expire", creds.Expires)
		}
		p.log.Info("AWS credentials found", attrs...)
	}
	return nil
}
